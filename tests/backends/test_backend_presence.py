"""The presence contract of every backend (``Backend.track`` and
``Backend.presence`` in broker.backends.base; docs/HISTORY-PRESENCE.md,
"Presence"): the memory backend and Redis give the same answers.

``track`` is ordered before the node's next publish, not before a read, so
each test settles one publish after its tracks, as a join's ``ok`` does.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from broker.backends import Backend, MemoryBackend, MemoryBus
from broker.backends.base import Membership, PresenceHooks, PresenceRead
from broker.backends.redis import RedisBackend, redis_client_factory
from tests.backends.conftest import Peer

PresencePeers = Callable[[int], Awaitable[list[Peer]]]
ANNOUNCEMENT = b'{"type":"joined","room":"lobby","session":"s-x"}'
HOOKS = PresenceHooks(lost=lambda _: None, revived=lambda _: None)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def presence_peers(request: pytest.FixtureRequest) -> AsyncIterator[PresencePeers]:
    """``await presence_peers(n)``: n started backends of one cluster, each
    started with presence hooks (as a node starts them)."""
    make: Callable[[str], Backend]
    if request.param == "memory":
        bus = MemoryBus()
        make = lambda _node: MemoryBackend(bus)  # noqa: E731
    else:
        url = request.getfixturevalue("shared_redis").url
        namespace = "p" + uuid.uuid4().hex[:10]
        make = lambda node: RedisBackend(  # noqa: E731
            redis_client_factory(url), node=node, namespace=namespace
        )
    started: list[Peer] = []

    async def start(count: int) -> list[Peer]:
        group = []
        for i in range(count):
            name = f"n-{len(started)}-{i}"
            peer = Peer(name, make(name))
            await peer.backend.start(peer.deliver, HOOKS)
            started.append(peer)
            group.append(peer)
        return group

    yield start
    for peer in started:
        await peer.backend.close()


async def track(peer: Peer, *changes: tuple[str, str | None, bool], room: str = "lobby") -> None:
    """Track ``(session, user, member)`` changes on ``peer``, then settle one
    publish after them (the order a join's ``ok`` relies on)."""
    for session, user, member in changes:
        peer.backend.track(Membership(room, session, user), member)
    await peer.backend.publish(room, "s-x", ANNOUNCEMENT, history=False)


def listed(read: PresenceRead) -> list[tuple[str, str | None]]:
    return sorted((session, user) for session, user in read.members)


async def test_a_room_nobody_is_in_is_empty(presence_peers: PresencePeers) -> None:
    (a,) = await presence_peers(1)
    read = await a.backend.presence("lobby", 10)
    assert (read.count, read.users, listed(read), read.truncated) == (0, 0, [], False)


async def test_every_node_sees_the_sessions_of_every_node(presence_peers: PresencePeers) -> None:
    a, b = await presence_peers(2)
    await track(a, ("s-a", "alice", True))
    await track(b, ("s-b", "bob", True))

    for peer in (a, b):
        read = await peer.backend.presence("lobby", 10)
        assert (read.count, read.users) == (2, 2)
        assert listed(read) == [("s-a", "alice"), ("s-b", "bob")]


async def test_two_sessions_of_one_user_count_as_one_user(presence_peers: PresencePeers) -> None:
    a, b = await presence_peers(2)
    await track(a, ("s-1", "alice", True))
    await track(b, ("s-2", "alice", True))

    read = await a.backend.presence("lobby", 10)

    assert (read.count, read.users) == (2, 1)


async def test_anonymous_sessions_count_in_count_only(presence_peers: PresencePeers) -> None:
    (a,) = await presence_peers(1)
    await track(a, ("s-1", None, True), ("s-2", None, True), ("s-3", "alice", True))

    read = await a.backend.presence("lobby", 10)

    assert (read.count, read.users) == (3, 1)
    assert listed(read) == [("s-1", None), ("s-2", None), ("s-3", "alice")]


async def test_members_are_listed_up_to_the_limit_then_truncated(
    presence_peers: PresencePeers,
) -> None:
    (a,) = await presence_peers(1)
    sessions = [(f"s-{i}", f"u-{i}", True) for i in range(5)]
    await track(a, *sessions)

    read = await a.backend.presence("lobby", 3)

    assert (read.count, read.users, read.truncated) == (5, 5, True)
    assert len(read.members) == 3
    assert set(listed(read)) <= {(session, user) for session, user, _ in sessions}


async def test_a_room_at_exactly_the_limit_is_not_truncated(
    presence_peers: PresencePeers,
) -> None:
    (a,) = await presence_peers(1)
    await track(a, *[(f"s-{i}", None, True) for i in range(3)])

    read = await a.backend.presence("lobby", 3)

    assert (len(read.members), read.truncated) == (3, False)


async def test_an_ended_membership_is_removed(presence_peers: PresencePeers) -> None:
    a, b = await presence_peers(2)
    await track(a, ("s-a", "alice", True), ("s-b", "bob", True))
    await track(a, ("s-a", "alice", False))

    read = await b.backend.presence("lobby", 10)

    assert (read.count, read.users, listed(read)) == (1, 1, [("s-b", "bob")])


async def test_a_user_counts_until_its_last_session_left(presence_peers: PresencePeers) -> None:
    (a,) = await presence_peers(1)
    await track(a, ("s-1", "alice", True), ("s-2", "alice", True))
    await track(a, ("s-1", "alice", False))
    one_left = await a.backend.presence("lobby", 10)
    await track(a, ("s-2", "alice", False))
    none_left = await a.backend.presence("lobby", 10)

    assert (one_left.count, one_left.users) == (1, 1)
    assert (none_left.count, none_left.users, listed(none_left)) == (0, 0, [])


async def test_a_session_in_two_rooms_is_counted_in_each(presence_peers: PresencePeers) -> None:
    (a,) = await presence_peers(1)
    await track(a, ("s-1", "alice", True), room="lobby")
    await track(a, ("s-1", "alice", True), ("s-2", None, True), room="kitchen")
    await track(a, ("s-1", "alice", False), room="kitchen")

    lobby = await a.backend.presence("lobby", 10)
    kitchen = await a.backend.presence("kitchen", 10)

    assert listed(lobby) == [("s-1", "alice")]
    assert listed(kitchen) == [("s-2", None)]
