"""Positions, recovery and history over real broker processes
(docs/HISTORY-PRESENCE.md: "Positions", "Options", "Recovery", "history",
"Server API"), on one node with the memory backend and on two nodes on
Redis. Raw WebSocket clients, so that the wire is what is checked.

In each test, ``a`` is on the first node and ``b`` on the second (the same
node with the memory backend); each test has a room of its own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import BrokerFactory, ClientFactory
from tests.reliability.observe import eventually, health
from tests.support.http_api import call
from tests.support.processes import BrokerProcess, RedisServer
from tests.support.wire import Frame, WireClient

HISTORY_SIZE = 10
API_KEY = "history-api-key-0123456789abcdef"
ENV = {"BROKER_API_KEY": API_KEY}
OPTIONS = ("--history-size", str(HISTORY_SIZE))


@dataclass(frozen=True)
class Pair:
    """The nodes ``a`` and ``b`` connect to (one node twice with memory)."""

    first: BrokerProcess
    second: BrokerProcess


BACKENDS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


def backend_args(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """No option for the memory backend; the shared Redis and a namespace of
    the fixture's own for Redis."""
    if request.param == "memory":
        return ()
    redis: RedisServer = request.getfixturevalue("shared_redis")
    return ("--redis-url", redis.url, "--namespace", "h" + uuid.uuid4().hex[:10])


@pytest.fixture(scope="module", params=BACKENDS)
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    """Two nodes on Redis, or one with the memory backend, for the module."""
    args = (*OPTIONS, *backend_args(request))
    nodes = [BrokerProcess(args=args, env=ENV).start()]
    if request.param != "memory":
        nodes.append(BrokerProcess(args=args, env=ENV).start())
    yield Pair(nodes[0], nodes[-1])
    for node in nodes:
        node.cleanup()


@pytest.fixture
def room() -> str:
    return "h-" + uuid.uuid4().hex[:12]


@pytest.fixture
async def a(pair: Pair, wire: ClientFactory) -> WireClient:
    return await wire(pair.first.url)


@pytest.fixture
async def b(pair: Pair, wire: ClientFactory) -> WireClient:
    return await wire(pair.second.url)


async def next_message(client: WireClient, timeout: float = 5.0) -> Frame:
    """The next ``message`` event (``joined`` and ``left`` are skipped)."""
    while True:
        frame = await client.next_event(timeout)
        if frame["type"] == "message":
            return frame


def queued_messages(client: WireClient) -> list[Frame]:
    """The ``message`` events already arrived, taken without waiting."""
    frames = []
    while not client.events.empty():
        frames.append(client.events.get_nowait())
    return [frame for frame in frames if frame["type"] == "message"]


async def say_n(client: WireClient, room: str, n: int) -> list[Frame]:
    """``n`` says, one after the other; their ``ok`` replies."""
    return [await client.say(room, f"m{i}") for i in range(1, n + 1)]


def position(frame: Frame) -> tuple[int, str]:
    return frame["offset"], frame["epoch"]


# --- Positions -------------------------------------------------------------


async def test_join_of_a_new_room_gets_offset_0_and_an_epoch(a: WireClient, room: str) -> None:
    ok = await a.join(room)

    assert ok["offset"] == 0
    assert isinstance(ok["epoch"], str) and 1 <= len(ok["epoch"]) <= 64


async def test_every_message_has_the_next_offset_in_one_epoch(
    a: WireClient, b: WireClient, room: str
) -> None:
    epoch = (await a.join(room))["epoch"]
    await b.join(room)

    await say_n(a, room, 3)

    got = [position(await next_message(b)) for _ in range(3)]
    assert got == [(1, epoch), (2, epoch), (3, epoch)]


async def test_say_ok_carries_the_position_its_message_got(
    a: WireClient, b: WireClient, room: str
) -> None:
    await a.join(room)
    await b.join(room)

    oks = await say_n(a, room, 2)

    received = [await next_message(b) for _ in oks]
    assert [position(ok) for ok in oks] == [position(frame) for frame in received]
    assert [frame["body"] for frame in received] == ["m1", "m2"]


async def test_join_ok_carries_the_last_offset_before_the_session_became_a_member(
    a: WireClient, b: WireClient, room: str
) -> None:
    await a.join(room)
    last = (await say_n(a, room, 2))[-1]

    ok = await b.join(room)

    assert position(ok) == position(last)


async def test_sender_never_receives_its_own_message(
    a: WireClient, b: WireClient, room: str
) -> None:
    await a.join(room)
    await b.join(room)
    await a.expect("joined", session=b.session)
    await a.say(room, "mine")
    await next_message(b)

    await a.expect_silence(0.3)


# --- Recovery --------------------------------------------------------------


async def join_since(client: WireClient, room: str, offset: int, epoch: str) -> Frame:
    return await client.request("join", room=room, since={"offset": offset, "epoch": epoch})


async def test_since_with_a_gap_replays_the_missed_messages_before_the_ok(
    a: WireClient, b: WireClient, room: str
) -> None:
    epoch = (await a.join(room))["epoch"]
    await say_n(a, room, 3)

    ok = await join_since(b, room, 1, epoch)

    # The reader queues events and resolves replies in arrival order: what
    # is queued when the ok is seen came before it.
    replayed = queued_messages(b)
    assert (ok["type"], ok.get("recovered")) == ("ok", True), ok
    assert position(ok) == (3, epoch)
    assert [(f["offset"], f["body"], f["from"]) for f in replayed] == [
        (2, "m2", a.session),
        (3, "m3", a.session),
    ]


async def test_since_with_a_gap_goes_on_live_without_duplicate(
    a: WireClient, b: WireClient, room: str
) -> None:
    epoch = (await a.join(room))["epoch"]
    await say_n(a, room, 2)
    await join_since(b, room, 1, epoch)
    queued_messages(b)  # the replayed one

    await a.say(room, "live")

    frame = await next_message(b)
    assert (frame["offset"], frame["body"]) == (3, "live")
    await b.expect_silence(0.3)


async def test_since_at_the_current_offset_recovers_and_replays_nothing(
    a: WireClient, b: WireClient, room: str
) -> None:
    epoch = (await a.join(room))["epoch"]
    await say_n(a, room, 2)

    ok = await join_since(b, room, 2, epoch)

    assert (ok["type"], ok.get("recovered"), position(ok)) == ("ok", True, (2, epoch)), ok
    assert queued_messages(b) == []


async def test_since_in_an_unknown_epoch_is_not_recovered(
    a: WireClient, b: WireClient, room: str
) -> None:
    await a.join(room)
    await say_n(a, room, 2)

    ok = await join_since(b, room, 1, "no-such-epoch")

    assert (ok["type"], ok.get("recovered")) == ("ok", False), ok
    assert queued_messages(b) == []


async def test_since_beyond_the_current_offset_is_not_recovered(
    a: WireClient, b: WireClient, room: str
) -> None:
    epoch = (await a.join(room))["epoch"]
    await say_n(a, room, 2)

    ok = await join_since(b, room, 5, epoch)

    assert (ok["type"], ok.get("recovered")) == ("ok", False), ok
    assert position(ok) == (2, epoch)
    assert queued_messages(b) == []


async def test_since_older_than_history_holds_is_not_recovered(
    a: WireClient, b: WireClient, room: str
) -> None:
    epoch = (await a.join(room))["epoch"]
    await say_n(a, room, HISTORY_SIZE + 2)  # offsets 1 and 2 are dropped

    ok = await join_since(b, room, 1, epoch)

    assert (ok["type"], ok.get("recovered")) == ("ok", False), ok
    assert queued_messages(b) == []


async def test_since_of_a_room_already_joined_replays_nothing_and_says_no_recovered(
    a: WireClient, b: WireClient, room: str
) -> None:
    epoch = (await a.join(room))["epoch"]
    await b.join(room)
    await say_n(a, room, 2)
    await next_message(b)
    await next_message(b)

    ok = await join_since(b, room, 0, epoch)

    assert ok["type"] == "ok" and "recovered" not in ok, ok
    assert position(ok) == (2, epoch)
    await b.expect_silence(0.3)


# --- history ---------------------------------------------------------------


async def test_history_with_limit_gives_the_newest_oldest_first(
    a: WireClient, b: WireClient, room: str
) -> None:
    epoch = (await a.join(room))["epoch"]
    await b.join(room)
    await say_n(a, room, 4)
    members_got = [await next_message(b) for _ in range(4)]

    reply = await b.request("history", room=room, limit=2)

    assert reply["type"] == "history", reply
    assert (reply["room"], position(reply)) == (room, (4, epoch))
    assert reply["messages"] == members_got[2:]  # exactly as members received them


async def test_history_without_limit_gives_all_kept(a: WireClient, room: str) -> None:
    await a.join(room)
    await say_n(a, room, HISTORY_SIZE + 3)

    reply = await a.request("history", room=room)

    offsets = [m["offset"] for m in reply["messages"]]
    assert offsets == list(range(4, HISTORY_SIZE + 4))


async def test_history_before_pages_back(a: WireClient, room: str) -> None:
    await a.join(room)
    await say_n(a, room, 5)

    reply = await a.request("history", room=room, limit=2, before=4)

    assert [(m["offset"], m["body"]) for m in reply["messages"]] == [(2, "m2"), (3, "m3")]
    assert reply["offset"] == 5


async def test_history_by_a_non_member_is_not_member(
    a: WireClient, b: WireClient, room: str
) -> None:
    await a.join(room)
    await say_n(a, room, 1)

    reply = await b.request("history", room=room)

    assert (reply["type"], reply.get("code")) == ("error", "not_member"), reply


BAD_REQUESTS = [
    pytest.param("join", {"since": {"offset": "x", "epoch": "e"}}, "since", id="since-offset"),
    pytest.param("join", {"since": {"offset": -1, "epoch": "e"}}, "since", id="since-negative"),
    pytest.param("join", {"since": {"offset": 1, "epoch": ""}}, "since", id="since-epoch"),
    pytest.param("join", {"since": {"offset": 1}}, "since", id="since-no-epoch"),
    pytest.param("join", {"since": 3}, "since", id="since-not-object"),
    pytest.param("history", {"limit": 0}, "limit", id="limit-0"),
    pytest.param("history", {"limit": HISTORY_SIZE + 1}, "limit", id="limit-too-big"),
    pytest.param("history", {"before": "x"}, "before", id="before-text"),
    pytest.param("history", {"before": 1.5}, "before", id="before-float"),
]


@pytest.mark.parametrize(("kind", "fields", "name"), BAD_REQUESTS)
async def test_bad_position_input_is_bad_message_naming_the_field(
    a: WireClient, room: str, kind: str, fields: dict[str, Any], name: str
) -> None:
    await a.join(room)  # so that a history request is refused for its input only

    reply = await a.request(kind, room=room, **fields)

    assert (reply["type"], reply.get("code")) == ("error", "bad_message"), reply
    assert name in reply["message"], reply


# --- Server API ------------------------------------------------------------


async def test_history_endpoint_with_the_key_answers_the_history(
    pair: Pair, a: WireClient, room: str
) -> None:
    epoch = (await a.join(room))["epoch"]
    await say_n(a, room, 3)

    status, answer = await asyncio.to_thread(
        call, "GET", f"{pair.second.http}/rooms/{room}/history?limit=2&before=3", key=API_KEY
    )

    assert status == 200, answer
    assert "type" not in answer and "ref" not in answer
    assert (answer["room"], answer["offset"], answer["epoch"]) == (room, 3, epoch)
    assert [m["body"] for m in answer["messages"]] == ["m1", "m2"]


@pytest.mark.parametrize("key", [None, "wrong-key-0123456789abcdefghij"])
def test_history_endpoint_without_the_key_is_401(pair: Pair, key: str | None) -> None:
    status, _ = call("GET", f"{pair.first.http}/rooms/lobby/history", key=key)

    assert status == 401


def test_history_endpoint_with_a_bad_room_is_400(pair: Pair) -> None:
    status, answer = call("GET", f"{pair.first.http}/rooms/bad!room/history", key=API_KEY)

    assert status == 400, answer


@pytest.mark.parametrize("query", ["limit=0", f"limit={HISTORY_SIZE + 1}", "limit=x", "before=x"])
def test_history_endpoint_with_a_bad_query_is_400(pair: Pair, query: str) -> None:
    status, answer = call("GET", f"{pair.first.http}/rooms/lobby/history?{query}", key=API_KEY)

    assert status == 400, answer


async def test_publish_202_carries_the_position_members_receive(
    pair: Pair, a: WireClient, room: str
) -> None:
    epoch = (await a.join(room))["epoch"]

    status, answer = await asyncio.to_thread(
        call, "POST", pair.second.http + "/publish", {"room": room, "body": "srv"}, API_KEY
    )

    assert status == 202, answer
    assert (answer["offset"], answer["epoch"]) == (1, epoch)
    frame = await next_message(a)
    assert (frame["body"], position(frame)) == ("srv", (1, epoch))


# --- Expiry and epochs -----------------------------------------------------


async def history_is_empty(node: BrokerProcess, room: str) -> bool:
    status, answer = await asyncio.to_thread(
        call, "GET", f"{node.http}/rooms/{room}/history", key=API_KEY
    )
    assert status == 200, answer
    return not answer["messages"]


@pytest.fixture(params=BACKENDS)
def expiring(request: pytest.FixtureRequest, broker: BrokerFactory) -> BrokerProcess:
    """A node whose messages expire a second after a room's last message,
    while positions stay for a day."""
    ttl = ("--history-ttl", "1", "--history-meta-ttl", "86400")
    return broker(*OPTIONS, *ttl, *backend_args(request), env=ENV)


async def test_since_after_the_messages_expired_is_not_recovered(
    expiring: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    a, b = await wire(expiring.url), await wire(expiring.url)
    epoch = (await a.join(room))["epoch"]
    await say_n(a, room, 2)
    await eventually(lambda: history_is_empty(expiring, room), timeout=10)

    ok = await join_since(b, room, 1, epoch)

    assert (ok["type"], ok.get("recovered")) == ("ok", False), ok
    assert position(ok) == (2, epoch)  # the position outlives the messages
    assert queued_messages(b) == []


async def test_since_at_the_current_offset_recovers_after_the_messages_expired(
    expiring: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    a, b = await wire(expiring.url), await wire(expiring.url)
    epoch = (await a.join(room))["epoch"]
    await say_n(a, room, 2)
    await eventually(lambda: history_is_empty(expiring, room), timeout=10)

    ok = await join_since(b, room, 2, epoch)

    assert (ok["type"], ok.get("recovered")) == ("ok", True), ok


@pytest.mark.redis
async def test_after_redis_restarts_empty_members_see_a_new_epoch_from_offset_1(
    broker: BrokerFactory, redis_server: RedisServer, wire: ClientFactory, room: str
) -> None:
    nodes = [broker(*OPTIONS, "--redis-url", redis_server.url, env=ENV) for _ in range(2)]
    a, b = await wire(nodes[0].url), await wire(nodes[1].url)
    old = (await a.join(room))["epoch"]
    await b.join(room)
    await say_n(a, room, 3)
    assert [position(await next_message(b)) for _ in range(3)] == [(1, old), (2, old), (3, old)]
    await restart_empty(redis_server, nodes)

    ok = await a.request("say", room=room, body="after", timeout=7)

    assert ok["type"] == "ok", ok
    frame = await next_message(b, timeout=7)
    assert (frame["body"], frame["offset"]) == ("after", 1), frame
    assert frame["epoch"] != old
    assert position(ok) == position(frame)


@pytest.mark.redis
async def test_after_redis_restarts_empty_since_in_the_old_epoch_is_not_recovered(
    broker: BrokerFactory, redis_server: RedisServer, wire: ClientFactory, room: str
) -> None:
    nodes = [broker(*OPTIONS, "--redis-url", redis_server.url, env=ENV) for _ in range(2)]
    a, b = await wire(nodes[0].url), await wire(nodes[1].url)
    old = (await a.join(room))["epoch"]
    await say_n(a, room, 3)
    await restart_empty(redis_server, nodes)

    ok = await join_since(b, room, 2, old)

    assert (ok["type"], ok.get("recovered")) == ("ok", False), ok
    assert ok["epoch"] != old


async def restart_empty(redis: RedisServer, nodes: list[BrokerProcess]) -> None:
    """Kill Redis (nothing is persisted), start it again on its port, and wait
    until every node is ready again."""
    await asyncio.to_thread(redis.kill)
    await eventually(lambda: all_health(nodes, 503), timeout=5)
    await asyncio.to_thread(redis.start)
    await eventually(lambda: all_health(nodes, 200), timeout=10)


async def all_health(nodes: list[BrokerProcess], status: int) -> bool:
    """Whether every node's ``/healthz`` answers ``status``."""
    return all([await health(node) == status for node in nodes])


@pytest.mark.redis
async def test_history_while_redis_is_away_is_unavailable_and_the_connection_stays(
    broker: BrokerFactory, redis_server: RedisServer, wire: ClientFactory, room: str
) -> None:
    node = broker(*OPTIONS, "--redis-url", redis_server.url, env=ENV)
    a = await wire(node.url)
    await a.join(room)
    await asyncio.to_thread(redis_server.kill)
    await eventually(lambda: all_health([node], 503), timeout=5)

    reply = await a.request("history", room=room, timeout=7)

    assert (reply["type"], reply.get("code")) == ("error", "unavailable"), reply
    assert (await a.request("ping"))["type"] == "pong"


# --- A room without history --------------------------------------------------


@pytest.fixture(params=BACKENDS)
def historyless(request: pytest.FixtureRequest, broker: BrokerFactory) -> BrokerProcess:
    """A node with ``--history-size 0``: no history and no positions."""
    return broker("--history-size", "0", *backend_args(request), env=ENV)


async def test_without_history_messages_and_oks_carry_no_position(
    historyless: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    a, b = await wire(historyless.url), await wire(historyless.url)
    join = await a.join(room)
    await b.join(room)

    say = await a.say(room, "plain")

    frame = await next_message(b)
    assert [key for key in ("offset", "epoch") if key in join or key in say or key in frame] == []


async def test_without_history_the_history_reply_is_empty_without_offset(
    historyless: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    a = await wire(historyless.url)
    await a.join(room)
    await a.say(room, "plain")

    reply = await a.request("history", room=room)

    assert reply["type"] == "history", reply
    assert reply["messages"] == [] and "offset" not in reply
