"""Presence over a cluster of real nodes on one Redis (docs/HISTORY-PRESENCE.md,
"Presence" and "Server API"; issue 13, "Tests").

The contract checked here, from outside, with raw WebSocket clients:

* a session whose ``join`` got ``ok`` on any node is in every node's reply
  asked for after that ``ok``; one whose ``leave`` got ``ok``, or whose
  ``left`` was announced, is in none;
* the sessions of a SIGKILLed node are gone within ``--node-timeout``, and a
  node restarted under the same ``--node-id`` leaves none of its last run's;
* ``users`` counts distinct users, anonymous sessions count in ``count`` only;
  at most 1,000 members are listed, with ``truncated``;
* Redis restarted empty gets presence back from the nodes' live sessions;
  while it is away, ``presence`` answers ``unavailable`` and the connection
  stays open;
* bad input: ``not_member``, ``bad_room``; the HTTP endpoint's 200/400/401/404.

Nodes that no test breaks are shared by the module (each test has a room of
its own); a test that kills a node or Redis starts a cluster of its own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence

import pytest

from tests.conftest import BrokerFactory, ClientFactory
from tests.reliability.observe import eventually
from tests.security.tokens import SECRET, hs256
from tests.support.crowd import Crowd
from tests.support.http_api import call
from tests.support.processes import BrokerProcess, RedisServer
from tests.support.wire import Frame, WireClient

pytestmark = pytest.mark.redis

API_KEY = "presence-api-key-0123456789abcdef"
ENV = {"BROKER_API_KEY": API_KEY}
NODE_TIMEOUT = 2.0
# Past the node timeout: a survivor's reaper runs on its own period, and the
# machine is shared; the contract's bound is NODE_TIMEOUT, this is a deadline.
GONE_WITHIN = NODE_TIMEOUT + 8.0
# A node reconnects to Redis with a full-jitter backoff capped at 5 s (README,
# "Failure modes"), then writes its sessions' records again.
REBUILT_WITHIN = 15.0
MAX_LISTED = 1000
CROWD = 1200


# --- Helpers ---------------------------------------------------------------


async def presence(client: WireClient, room: str) -> Frame:
    """``presence`` of ``room``; the reply must be a presence reply."""
    reply = await client.request("presence", room=room)
    assert reply["type"] == "presence", reply
    assert reply["room"] == room, reply
    return reply


def listed(reply: Frame) -> set[str]:
    """The sessions a presence reply lists."""
    return {member["session"] for member in reply["members"]}


async def assert_every_node_lists(
    askers: Sequence[WireClient], room: str, expected: set[str]
) -> None:
    """Every asker's reply lists exactly ``expected`` (anonymous sessions)."""
    for asker in askers:
        reply = await presence(asker, room)
        assert listed(reply) == expected, (asker.welcome["node"], reply)
        assert (reply["count"], reply["users"]) == (len(expected), 0), reply
        assert reply.get("truncated", False) is False, reply


async def lists_none_of(askers: Sequence[WireClient], room: str, gone: set[str]) -> bool:
    """Whether no asker's reply lists any session of ``gone``."""
    replies = [await presence(asker, room) for asker in askers]
    return all(not listed(reply) & gone for reply in replies)


async def announced(client: WireClient, type_: str, session: str, timeout: float = 10.0) -> None:
    """Wait until ``client`` is told ``type_`` (``joined``/``left``) of ``session``,
    past the announcements of others."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await client.next_event(timeout)
            if frame["type"] == type_ and frame.get("session") == session:
                return


async def askers_in(
    nodes: Sequence[BrokerProcess], wire: ClientFactory, room: str
) -> list[WireClient]:
    """One member of ``room`` on each node, joined in order (only members may ask)."""
    askers = [await wire(node.url) for node in nodes]
    for asker in askers:
        await asker.join(room)
    return askers


def start_nodes(count: int, *args: str, env: dict[str, str] | None = None) -> list[BrokerProcess]:
    """``count`` nodes with ``args``; the caller cleans them up."""
    nodes: list[BrokerProcess] = []
    try:
        for _ in range(count):
            nodes.append(BrokerProcess(args=args, env=env or {}))
            nodes[-1].start()
    except BaseException:
        for node in nodes:
            node.cleanup()
        raise
    return nodes


def on_redis(redis: RedisServer) -> tuple[str, ...]:
    """Options of a node on ``redis``, in a namespace of its cluster's own."""
    return ("--redis-url", redis.url, "--namespace", "p" + uuid.uuid4().hex[:10])


# --- Fixtures --------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(shared_redis: RedisServer) -> Iterator[list[BrokerProcess]]:
    """Three nodes on the shared Redis, with the HTTP API, for the module."""
    nodes = start_nodes(3, *on_redis(shared_redis), env=ENV)
    yield nodes
    for node in nodes:
        node.cleanup()


@pytest.fixture(scope="module")
def mixed(shared_redis: RedisServer) -> Iterator[tuple[BrokerProcess, BrokerProcess]]:
    """Node 0 takes tokens (users), node 1 is anonymous; one cluster."""
    common = on_redis(shared_redis)
    (tokens,) = start_nodes(1, *common, "--jwt-secret", SECRET)
    try:
        (anonymous,) = start_nodes(1, *common)
    except BaseException:
        tokens.cleanup()
        raise
    yield tokens, anonymous
    for node in (tokens, anonymous):
        node.cleanup()


@pytest.fixture
def own_cluster(broker: BrokerFactory, redis_server: RedisServer) -> list[BrokerProcess]:
    """Three nodes on a Redis of the test's own, with a short node timeout,
    for a test that kills a node or Redis."""
    args = ("--redis-url", redis_server.url, "--node-timeout", str(NODE_TIMEOUT))
    return [broker(*args, "--node-id", f"n-{i}") for i in range(3)]


@pytest.fixture
def room() -> str:
    return "p-" + uuid.uuid4().hex[:12]


# --- Read after acknowledgement --------------------------------------------


async def test_every_node_lists_exactly_the_members_right_after_each_join_ok(
    cluster: list[BrokerProcess], wire: ClientFactory, room: str
) -> None:
    askers = await askers_in(cluster, wire, room)
    expected = {asker.session for asker in askers}

    for i in range(6):
        joiner = await wire(cluster[i % 3].url)
        await joiner.join(room)
        expected.add(joiner.session)

        await assert_every_node_lists(askers, room, expected)


async def test_every_node_lists_exactly_the_members_right_after_each_leave_ok(
    cluster: list[BrokerProcess], wire: ClientFactory, room: str
) -> None:
    askers = await askers_in(cluster, wire, room)
    leavers = [await wire(cluster[i % 3].url) for i in range(6)]
    for leaver in leavers:
        await leaver.join(room)
    expected = {client.session for client in [*askers, *leavers]}

    for leaver in leavers:
        reply = await leaver.request("leave", room=room)
        assert reply["type"] == "ok", reply
        expected.discard(leaver.session)

        await assert_every_node_lists(askers, room, expected)


async def test_a_tcp_drop_is_gone_from_every_node_when_its_left_arrives(
    cluster: list[BrokerProcess], wire: ClientFactory, room: str
) -> None:
    askers = await askers_in(cluster, wire, room)
    dropped = await wire(cluster[2].url)
    await dropped.join(room)
    await announced(askers[0], "joined", dropped.session)

    dropped.ws.transport.abort()  # no close frame: the TCP connection just ends
    await announced(askers[0], "left", dropped.session)

    await assert_every_node_lists(askers, room, {asker.session for asker in askers})


# --- Node crash and restart ------------------------------------------------


async def test_sessions_of_a_killed_node_leave_the_survivors_replies_within_the_node_timeout(
    own_cluster: list[BrokerProcess], wire: ClientFactory, room: str
) -> None:
    askers = await askers_in(own_cluster, wire, room)
    victims = [await wire(own_cluster[2].url) for _ in range(2)]
    for victim in victims:
        await victim.join(room)
    gone = {victims[0].session, victims[1].session, askers[2].session}
    survivors = askers[:2]
    await assert_every_node_lists(survivors, room, {a.session for a in askers} | gone)

    own_cluster[2].kill()  # SIGKILL: nothing said, nothing removed by the node itself

    await eventually(lambda: lists_none_of(survivors, room, gone), GONE_WITHIN, interval=0.2)
    await assert_every_node_lists(survivors, room, {a.session for a in survivors})


async def test_a_node_restarted_under_its_id_leaves_no_stale_record(
    broker: BrokerFactory, redis_server: RedisServer, wire: ClientFactory, room: str
) -> None:
    # A node timeout far beyond the test: only the restart can remove them.
    args = ("--redis-url", redis_server.url, "--node-timeout", "60")
    survivor = broker(*args)
    doomed = broker(*args, "--node-id", "n-phoenix")
    (watcher,) = await askers_in([survivor], wire, room)
    victims = [await wire(doomed.url) for _ in range(2)]
    for victim in victims:
        await victim.join(room)
    doomed.kill()

    phoenix = broker(*args, "--node-id", "n-phoenix")
    newcomer = await wire(phoenix.url)
    await newcomer.join(room)

    gone = {victim.session for victim in victims}
    await eventually(lambda: lists_none_of([watcher], room, gone), 5.0, interval=0.2)
    await assert_every_node_lists([watcher, newcomer], room, {watcher.session, newcomer.session})


# --- Users -----------------------------------------------------------------


async def test_two_sessions_of_one_user_count_as_one_user(
    mixed: tuple[BrokerProcess, BrokerProcess], wire: ClientFactory, room: str
) -> None:
    tokens, _ = mixed
    alice = [await wire(f"{tokens.url}?token={hs256(sub='alice')}") for _ in range(2)]
    bob = await wire(f"{tokens.url}?token={hs256(sub='bob')}")
    for client in [*alice, bob]:
        await client.join(room)

    reply = await presence(bob, room)

    assert (reply["count"], reply["users"]) == (3, 2), reply
    users = {member["session"]: member.get("user") for member in reply["members"]}
    assert users == {alice[0].session: "alice", alice[1].session: "alice", bob.session: "bob"}


async def test_anonymous_sessions_count_in_count_only(
    mixed: tuple[BrokerProcess, BrokerProcess], wire: ClientFactory, room: str
) -> None:
    tokens, anonymous = mixed
    alice = await wire(f"{tokens.url}?token={hs256(sub='alice')}")
    strangers = [await wire(anonymous.url) for _ in range(2)]
    for client in [alice, *strangers]:
        await client.join(room)

    reply = await presence(strangers[0], room)

    assert (reply["count"], reply["users"]) == (3, 1), reply
    users = {member["session"]: member.get("user") for member in reply["members"]}
    assert users == {alice.session: "alice", strangers[0].session: None, strangers[1].session: None}


# --- Truncation ------------------------------------------------------------


async def test_a_room_of_1200_lists_1000_members_and_says_truncated(
    cluster: list[BrokerProcess], wire: ClientFactory, room: str
) -> None:
    (asker,) = await askers_in(cluster[:1], wire, room)
    crowd = Crowd()
    try:
        await crowd.join([node.url for node in cluster], room, CROWD - 1)

        reply = await presence(asker, room)
    finally:
        crowd.close()

    assert (reply["count"], reply["users"]) == (CROWD, 0), {k: reply[k] for k in ("count", "users")}
    assert len(reply["members"]) == MAX_LISTED
    assert reply["truncated"] is True
    assert listed(reply) <= crowd.sessions | {asker.session}


# --- Redis away and back ---------------------------------------------------


async def test_presence_is_rebuilt_from_live_sessions_after_redis_restarts_empty(
    own_cluster: list[BrokerProcess], redis_server: RedisServer, wire: ClientFactory, room: str
) -> None:
    askers = await askers_in(own_cluster, wire, room)
    others = [await wire(own_cluster[i].url) for i in range(3)]
    for client in others:
        await client.join(room)
    expected = {client.session for client in [*askers, *others]}

    await asyncio.to_thread(redis_server.kill)
    await asyncio.to_thread(redis_server.start)  # same port, nothing in it

    async def rebuilt() -> bool:
        replies = [await asker.request("presence", room=room) for asker in askers]
        return all(r["type"] == "presence" and listed(r) == expected for r in replies)

    await eventually(rebuilt, REBUILT_WITHIN, interval=0.25)
    await assert_every_node_lists(askers, room, expected)


async def test_presence_while_redis_is_away_is_unavailable_and_the_connection_stays_open(
    own_cluster: list[BrokerProcess], redis_server: RedisServer, wire: ClientFactory, room: str
) -> None:
    (asker,) = await askers_in(own_cluster[:1], wire, room)

    await asyncio.to_thread(redis_server.kill)
    reply = await asker.request("presence", room=room, timeout=15)

    assert (reply["type"], reply["code"]) == ("error", "unavailable"), reply
    assert (await asker.request("ping"))["type"] == "pong"


# --- Bad input -------------------------------------------------------------


async def test_presence_of_a_room_not_joined_is_not_member(
    cluster: list[BrokerProcess], wire: ClientFactory, room: str
) -> None:
    await askers_in(cluster[:1], wire, room)  # the room has a member, just not this one
    stranger = await wire(cluster[1].url)

    reply = await stranger.request("presence", room=room)

    assert (reply["type"], reply["code"]) == ("error", "not_member"), reply


async def test_presence_of_a_bad_room_name_is_bad_room(
    cluster: list[BrokerProcess], wire: ClientFactory
) -> None:
    client = await wire(cluster[0].url)

    reply = await client.request("presence", room="bad room!")

    assert (reply["type"], reply["code"]) == ("error", "bad_room"), reply


# --- Server API --------------------------------------------------------------


async def test_presence_endpoint_with_the_key_answers_the_clusters_presence(
    cluster: list[BrokerProcess], wire: ClientFactory, room: str
) -> None:
    askers = await askers_in(cluster[:2], wire, room)

    status, answer = await asyncio.to_thread(
        call, "GET", f"{cluster[2].http}/rooms/{room}/presence", key=API_KEY
    )

    assert status == 200, answer
    assert "type" not in answer and "ref" not in answer
    assert (answer["room"], answer["count"], answer["users"]) == (room, 2, 0)
    assert listed(answer) == {asker.session for asker in askers}


@pytest.mark.parametrize("key", [None, "wrong-key-0123456789abcdefghij"])
def test_presence_endpoint_without_the_key_is_401(
    cluster: list[BrokerProcess], key: str | None
) -> None:
    status, _ = call("GET", f"{cluster[0].http}/rooms/lobby/presence", key=key)

    assert status == 401


def test_presence_endpoint_with_a_bad_room_is_400(cluster: list[BrokerProcess]) -> None:
    status, answer = call("GET", f"{cluster[0].http}/rooms/bad!room/presence", key=API_KEY)

    assert status == 400, answer


def test_presence_endpoint_without_api_key_option_is_404(
    broker: BrokerFactory, shared_redis: RedisServer
) -> None:
    node = broker(*on_redis(shared_redis))

    status, _ = call("GET", f"{node.http}/rooms/lobby/presence", key=API_KEY)

    assert status == 404
