"""Presence through the SDK (docs/HISTORY-PRESENCE.md, "Presence"): who is
in a room on every node, the asker included, read right after acknowledged
joins and leaves; users counted distinct; refusals typed. Run against a
memory node and a Redis node, and across two nodes on one Redis."""

from __future__ import annotations

import pytest

from protocol import PresenceMember, PresenceReply
from roomcast_client import BadRequest, Client, Member, NotMember, RoomPresence
from tests.conftest import BrokerFactory
from tests.sdk.conftest import SdkFactory
from tests.security.tokens import SECRET, hs256
from tests.support.processes import BrokerProcess, RedisServer


def _sessions(presence: RoomPresence) -> set[str]:
    return {member.session for member in presence.members}


async def _in_room(sdk: SdkFactory, urls: list[str], room: str) -> list[Client]:
    """One client per URL, each in ``room`` (joined one after the other)."""
    clients = [await sdk(url) for url in urls]
    for client in clients:
        await client.join(room)
    return clients


def test_reply_without_user_or_truncated_reads_as_none_and_false() -> None:
    reply = PresenceReply(
        ref=1,
        room="lobby",
        count=2,
        users=1,
        members=[PresenceMember("s-1", "ann"), PresenceMember("s-2")],
    )

    assert RoomPresence.from_reply(reply) == RoomPresence(
        "lobby", 2, 1, (Member("s-1", "ann"), Member("s-2", None)), truncated=False
    )


async def test_presence_lists_every_member_with_the_asker(
    node: BrokerProcess, sdk: SdkFactory
) -> None:
    alice, bob = await _in_room(sdk, [node.url, node.url], "lobby")

    presence = await alice.presence("lobby")

    assert (presence.room, presence.count, presence.truncated) == ("lobby", 2, False)
    assert sorted(presence.members) == sorted(
        [Member(alice.session, None), Member(bob.session, None)]
    )


async def test_anonymous_sessions_count_in_count_only(node: BrokerProcess, sdk: SdkFactory) -> None:
    alice, _ = await _in_room(sdk, [node.url, node.url], "anon")

    presence = await alice.presence("anon")

    assert (presence.count, presence.users) == (2, 0)


async def test_presence_right_after_a_leave_omits_the_leaver(
    node: BrokerProcess, sdk: SdkFactory
) -> None:
    stayer, leaver = await _in_room(sdk, [node.url, node.url], "door")

    await leaver.leave("door")
    presence = await stayer.presence("door")

    assert _sessions(presence) == {stayer.session}


async def test_sessions_of_one_user_count_as_one_user(
    broker: BrokerFactory, backend_args: tuple[str, ...], sdk: SdkFactory
) -> None:
    node = broker("--jwt-secret", SECRET, *backend_args)
    alice = [await sdk(node.url, token=hs256(sub="alice")) for _ in range(2)]
    bob = await sdk(node.url, token=hs256(sub="bob"))
    for client in (*alice, bob):
        await client.join("team")

    presence = await bob.presence("team")

    assert (presence.count, presence.users) == (3, 2)
    expected = [*(Member(client.session, "alice") for client in alice), Member(bob.session, "bob")]
    assert sorted(presence.members) == sorted(expected)


async def test_presence_of_a_room_not_joined_is_not_member(
    node: BrokerProcess, sdk: SdkFactory
) -> None:
    await _in_room(sdk, [node.url], "closed")
    outsider = await sdk(node.url)

    with pytest.raises(NotMember):
        await outsider.presence("closed")
    assert outsider.connected


async def test_presence_of_a_bad_room_name_is_a_bad_request(
    node: BrokerProcess, sdk: SdkFactory
) -> None:
    client = await sdk(node.url)

    with pytest.raises(BadRequest) as refused:
        await client.presence("no spaces")
    assert refused.value.code == "bad_room"


@pytest.mark.redis
async def test_presence_right_after_joins_on_two_nodes_lists_both_on_each(
    broker: BrokerFactory, shared_redis: RedisServer, namespace: str, sdk: SdkFactory
) -> None:
    cluster = ("--redis-url", shared_redis.url, "--namespace", namespace)
    first, second = broker(*cluster), broker(*cluster)
    here, there = await _in_room(sdk, [first.url, second.url], "wide")

    seen_here = await here.presence("wide")
    seen_there = await there.presence("wide")

    assert _sessions(seen_here) == _sessions(seen_there) == {here.session, there.session}
    assert seen_here.count == seen_there.count == 2


@pytest.mark.redis
async def test_presence_right_after_a_leave_on_another_node_omits_the_leaver(
    broker: BrokerFactory, shared_redis: RedisServer, namespace: str, sdk: SdkFactory
) -> None:
    cluster = ("--redis-url", shared_redis.url, "--namespace", namespace)
    first, second = broker(*cluster), broker(*cluster)
    stayer, leaver = await _in_room(sdk, [first.url, second.url], "exit")

    await leaver.leave("exit")
    presence = await stayer.presence("exit")

    assert (_sessions(presence), presence.count) == ({stayer.session}, 1)
