"""broker.connection: one client session between a wire and a node, in
process: the welcome, request dispatch and replies, the order of frames held
behind a join, cleanup when the connection ends, and the session's timers."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from broker.backends.base import BackendUnavailable, OutcomeUnknown
from broker.backends.memory import MemoryBackend, MemoryBus
from broker.backends.memory_history import MemoryHistory
from broker.connection import BACKLOG_PAUSE, ClientConnection, ConnectionLimits
from broker.grants import Identity, RoomGrant, TokenError
from broker.node import Node
from broker.outbox import SlowConsumerPolicy
from tests.support.fakes import FakeWire, GatedBackend, RecordingOutbox, next_turn

EVERY_ROOM = (RoomGrant(pattern="*", rights=frozenset({"join", "say"})),)


UNLIMITED = ConnectionLimits(
    max_rooms=10, say_rate=0.0, say_burst=0, slow_consumer=SlowConsumerPolicy()
)


def limits(**changes: Any) -> ConnectionLimits:
    return dataclasses.replace(UNLIMITED, **changes)


class Verifier:
    """Accepts exactly the tokens it was given."""

    def __init__(self, **identities: Identity) -> None:
        self.identities = identities

    def verify(self, token: str) -> Identity:
        if token not in self.identities:
            raise TokenError("bad token signature")
        return self.identities[token]


@pytest.fixture
def backend() -> GatedBackend:
    return GatedBackend()


@pytest.fixture
async def node(backend: GatedBackend) -> AsyncIterator[Node]:
    node = Node("n-test", backend)
    await node.start()
    yield node
    backend.gate.set()
    backend.accept_all()
    await node.close()


def connect(
    node: Node, settings: ConnectionLimits | None = None, identity: Identity | None = None
) -> tuple[ClientConnection, FakeWire]:
    wire = FakeWire()
    connection = ClientConnection(node, wire, settings or limits(), identity)
    connection.open()
    return connection, wire


async def settle() -> None:
    """Let the join tasks and the acceptances' callbacks run."""
    for _ in range(10):
        await next_turn()


def send(connection: ClientConnection, text: str) -> None:
    connection.receive(text.encode())


# --- welcome and dispatch --------------------------------------------------------


async def test_open_sends_welcome_with_the_session_and_node(node: Node) -> None:
    connection, wire = connect(node)
    (welcome,) = wire.sent
    assert (welcome["type"], welcome["session"], welcome["node"]) == (
        "welcome",
        connection.session.id,
        "n-test",
    )
    assert "user" not in welcome


async def test_open_and_close_count_the_session(node: Node) -> None:
    connection, _ = connect(node)
    assert (node.counters.sessions, node.counters.connections_total) == (1, 1)
    connection.closed()
    assert (node.counters.sessions, node.counters.connections_total) == (0, 1)


async def test_an_authenticated_welcome_names_the_user(node: Node) -> None:
    _, wire = connect(node, identity=Identity("alice", time.time() + 60, EVERY_ROOM))
    assert wire.sent[0]["user"] == "alice"


async def test_ping_is_answered_at_once(node: Node) -> None:
    connection, wire = connect(node)
    send(connection, '{"type":"ping","ref":7}')
    assert wire.replies() == [("pong", 7)]


async def test_bad_json_is_answered_with_bad_json_and_counted(node: Node) -> None:
    connection, wire = connect(node)
    send(connection, "{nope")
    assert wire.sent[-1]["code"] == "bad_json"
    assert node.counters.errors["bad_json"] == 1


async def test_a_refused_request_gets_its_error(node: Node) -> None:
    connection, wire = connect(node)
    send(connection, '{"type":"leave","room":"lobby","ref":3}')
    assert wire.sent[-1] == {
        "type": "error",
        "code": "not_member",
        "message": "not a member of room 'lobby'",
        "ref": 3,
    }


# --- join ------------------------------------------------------------------------


async def test_join_is_ok_once_joined_and_makes_a_member(node: Node) -> None:
    connection, wire = connect(node)
    send(connection, '{"type":"join","room":"lobby","ref":1}')
    await settle()
    assert wire.replies() == [("ok", 1)]
    assert connection.session.rooms == {"lobby"}
    assert node.hub.members("lobby") == (connection.session.id,)


async def test_join_is_ok_only_once_its_joined_was_accepted(
    node: Node, backend: GatedBackend
) -> None:
    connection, wire = connect(node)
    backend.hold = True
    send(connection, '{"type":"join","room":"lobby","ref":1}')
    await settle()
    assert wire.replies() == []
    backend.accept_all()
    await settle()
    assert wire.replies() == [("ok", 1)]


async def test_frames_after_a_join_wait_for_it_in_order(node: Node, backend: GatedBackend) -> None:
    connection, wire = connect(node)
    backend.gate.clear()
    send(connection, '{"type":"join","room":"lobby","ref":1}')
    send(connection, '{"type":"say","room":"lobby","body":"hi","ref":2}')
    send(connection, '{"type":"ping","ref":3}')
    await settle()
    assert wire.replies() == []
    backend.gate.set()
    await settle()
    assert wire.replies() == [("ok", 1), ("pong", 3), ("ok", 2)]


async def test_a_second_join_in_the_backlog_holds_the_rest_again(
    node: Node, backend: GatedBackend
) -> None:
    connection, wire = connect(node)
    backend.gate.clear()
    for text in (
        '{"type":"join","room":"a","ref":1}',
        '{"type":"join","room":"b","ref":2}',
        '{"type":"ping","ref":3}',
    ):
        send(connection, text)
    backend.gate.set()
    await settle()
    assert wire.replies() == [("ok", 1), ("ok", 2), ("pong", 3)]


async def test_reading_pauses_behind_a_pending_join_and_resumes_after(
    node: Node, backend: GatedBackend
) -> None:
    connection, wire = connect(node)
    backend.gate.clear()
    send(connection, '{"type":"join","room":"lobby","ref":1}')
    for ref in range(BACKLOG_PAUSE):
        send(connection, f'{{"type":"ping","ref":{ref + 10}}}')
    assert not wire.reading
    backend.gate.set()
    await settle()
    assert wire.reading
    assert len(wire.replies()) == 1 + BACKLOG_PAUSE


async def test_a_join_the_backend_refuses_is_unavailable(node: Node, backend: GatedBackend) -> None:
    connection, wire = connect(node)
    backend.fail = True
    send(connection, '{"type":"join","room":"lobby","ref":1}')
    send(connection, '{"type":"ping","ref":2}')
    await settle()
    assert wire.replies() == [("error", 1), ("pong", 2)]
    assert wire.sent[-2]["code"] == "unavailable"
    assert connection.session.rooms == set()


async def test_joins_beyond_the_join_budget_are_rate_limited(node: Node) -> None:
    connection, wire = connect(node, limits(join_rate=0.001, join_burst=1))
    send(connection, '{"type":"join","room":"a","ref":1}')
    await settle()
    send(connection, '{"type":"join","room":"b","ref":2}')
    assert wire.sent[-1]["code"] == "rate_limited"


# --- leave and say ---------------------------------------------------------------


async def test_leave_is_ok_only_once_its_left_was_accepted(
    node: Node, backend: GatedBackend
) -> None:
    connection, wire = connect(node)
    send(connection, '{"type":"join","room":"lobby","ref":1}')
    await settle()
    backend.hold = True
    send(connection, '{"type":"leave","room":"lobby","ref":2}')
    await settle()
    assert wire.replies() == [("ok", 1)]
    backend.accept_all()
    await settle()
    assert wire.replies() == [("ok", 1), ("ok", 2)]
    assert not node.hub.has_room("lobby")


async def test_say_is_ok_once_accepted_and_reaches_the_other_members(node: Node) -> None:
    connection, wire = connect(node)
    other = RecordingOutbox()
    await node.join("lobby", "s-other", other)
    send(connection, '{"type":"join","room":"lobby","ref":1}')
    await settle()
    send(connection, '{"type":"say","room":"lobby","body":{"n":1},"ref":2}')
    await settle()
    assert wire.replies()[-1] == ("ok", 2)
    assert other.messages()[-1]["body"] == {"n": 1}
    assert node.counters.says == 1


@pytest.mark.parametrize(
    ("error", "code"),
    [(BackendUnavailable("down"), "unavailable"), (OutcomeUnknown("timeout"), "internal")],
)
async def test_say_the_backend_fails_gets_the_publish_failure_code(
    node: Node, backend: GatedBackend, error: Exception, code: str
) -> None:
    connection, wire = connect(node)
    send(connection, '{"type":"join","room":"lobby","ref":1}')
    await settle()
    backend.hold = True
    send(connection, '{"type":"say","room":"lobby","body":"hi","ref":2}')
    backend.published[-1][3].set_exception(error)
    await settle()
    assert (wire.sent[-1]["code"], wire.sent[-1]["ref"]) == (code, 2)


# --- cleanup ---------------------------------------------------------------------


async def test_closed_leaves_every_room(node: Node, backend: GatedBackend) -> None:
    connection, _ = connect(node)
    send(connection, '{"type":"join","room":"a","ref":1}')
    await settle()
    send(connection, '{"type":"join","room":"b","ref":2}')
    await settle()
    connection.closed()
    await settle()
    assert node.hub.rooms() == ()
    assert backend.rooms == set()
    assert sorted(backend.types()) == ["joined", "joined", "left", "left"]


async def test_closed_while_joining_an_unsubscribed_room_joins_nothing(
    node: Node, backend: GatedBackend
) -> None:
    connection, _ = connect(node)
    backend.gate.clear()
    send(connection, '{"type":"join","room":"lobby","ref":1}')
    await settle()
    connection.closed()
    backend.gate.set()
    await settle()
    assert node.hub.rooms() == ()
    assert backend.types() == []
    assert backend.rooms == set()


async def test_closed_while_the_joined_is_pending_leaves_the_room(
    node: Node, backend: GatedBackend
) -> None:
    connection, _ = connect(node)
    backend.hold = True
    send(connection, '{"type":"join","room":"lobby","ref":1}')
    await settle()
    assert node.hub.has_room("lobby")
    connection.closed()
    backend.accept_all()
    await settle()
    assert node.hub.rooms() == ()
    assert backend.types() == ["joined", "left"]


async def test_close_writes_and_closes_the_wire_with_the_code(node: Node) -> None:
    connection, wire = connect(node)
    connection.close(1001, "going away")
    assert wire.closes == [(1001, "going away")]


# --- timers ----------------------------------------------------------------------


async def test_a_session_that_joins_no_room_is_closed_when_idle(node: Node) -> None:
    _, wire = connect(node, limits(idle_timeout=0.01))
    await asyncio.wait_for(wire.closing.wait(), 5)
    assert wire.closes == [(1008, "idle: no room joined")]


async def test_a_session_in_a_room_is_not_closed_when_idle(node: Node) -> None:
    connection, wire = connect(node, limits(idle_timeout=0.05))
    send(connection, '{"type":"join","room":"lobby","ref":1}')
    await settle()
    # Showing an absence needs the idle timeout to pass.
    await asyncio.sleep(0.1)
    assert wire.closes == []


async def test_the_connection_closes_at_the_token_exp(node: Node) -> None:
    _, wire = connect(node, identity=Identity("alice", time.time() + 0.01, EVERY_ROOM))
    await asyncio.wait_for(wire.closing.wait(), 5)
    assert wire.closes == [(1008, "token expired")]


async def test_a_refresh_moves_the_close_to_the_new_exp(node: Node) -> None:
    later = Identity("alice", time.time() + 3600, EVERY_ROOM)
    settings = limits(verifier=Verifier(fresh=later))
    connection, wire = connect(node, settings, Identity("alice", time.time() + 0.05, EVERY_ROOM))
    send(connection, '{"type":"refresh","token":"fresh","ref":1}')
    assert wire.replies() == [("ok", 1)]
    # Showing an absence needs the old exp to pass.
    await asyncio.sleep(0.1)
    assert wire.closes == []


async def test_join_of_a_joined_room_without_ref_sends_nothing(node: Node) -> None:
    connection, wire = connect(node)
    send(connection, '{"type":"join","room":"lobby"}')
    await settle()
    send(connection, '{"type":"join","room":"lobby"}')
    await settle()
    assert wire.types() == ["welcome"]


async def test_closed_stops_the_idle_and_expiry_timers(node: Node) -> None:
    identity = Identity("alice", time.time() + 0.01, EVERY_ROOM)
    connection, wire = connect(node, limits(idle_timeout=0.01), identity)
    connection.closed()
    # Showing an absence needs both timers' times to pass.
    await asyncio.sleep(0.05)
    assert wire.closes == []


# --- positions, recovery and history (docs/HISTORY-PRESENCE.md) -----------------


@pytest.fixture
async def history_node() -> AsyncIterator[Node]:
    bus = MemoryBus(MemoryHistory(size=10, ttl=600.0, meta_ttl=3600.0))
    node = Node("n-history", MemoryBackend(bus))
    await node.start()
    yield node
    await node.close()


async def test_the_ok_of_a_join_carries_the_position(history_node: Node) -> None:
    connection, wire = connect(history_node)
    send(connection, '{"type":"join","room":"lobby","ref":1}')
    await settle()
    ok = wire.sent[-1]
    assert (ok["type"], ok["ref"], ok["offset"]) == ("ok", 1, 0)
    assert ok["epoch"] and "recovered" not in ok


async def test_the_ok_of_a_say_carries_the_position_of_its_message(history_node: Node) -> None:
    connection, wire = connect(history_node)
    send(connection, '{"type":"join","room":"lobby","ref":1}')
    await settle()
    send(connection, '{"type":"say","room":"lobby","body":"a","ref":2}')
    send(connection, '{"type":"say","room":"lobby","body":"b","ref":3}')
    await settle()
    assert [(m["ref"], m["offset"]) for m in wire.sent[-2:]] == [(2, 1), (3, 2)]


async def test_a_join_again_answers_the_current_position(history_node: Node) -> None:
    connection, wire = connect(history_node)
    send(connection, '{"type":"join","room":"lobby","ref":1}')
    await settle()
    send(connection, '{"type":"say","room":"lobby","body":"a","ref":2}')
    await settle()
    send(connection, '{"type":"join","room":"lobby","ref":3}')
    assert (wire.sent[-1]["ref"], wire.sent[-1]["offset"]) == (3, 1)


async def test_join_with_since_replays_then_answers_recovered(history_node: Node) -> None:
    talker, talker_wire = connect(history_node)
    send(talker, '{"type":"join","room":"lobby","ref":1}')
    await settle()
    epoch = talker_wire.sent[-1]["epoch"]
    for body in ("a", "b", "c"):
        send(talker, f'{{"type":"say","room":"lobby","body":"{body}"}}')
    await settle()

    back, wire = connect(history_node)
    since = f'{{"offset":1,"epoch":"{epoch}"}}'
    send(back, f'{{"type":"join","room":"lobby","since":{since},"ref":5}}')
    await settle()

    frames = wire.sent[1:]
    assert [(f["type"], f.get("body")) for f in frames] == [
        ("message", "b"),
        ("message", "c"),
        ("ok", None),
    ]
    assert (frames[-1]["offset"], frames[-1]["recovered"]) == (3, True)


async def test_history_is_answered_with_the_kept_messages(history_node: Node) -> None:
    connection, wire = connect(history_node)
    send(connection, '{"type":"join","room":"lobby","ref":1}')
    await settle()
    for body in ("a", "b", "c"):
        send(connection, f'{{"type":"say","room":"lobby","body":"{body}"}}')
    await settle()
    send(connection, '{"type":"history","room":"lobby","limit":2,"ref":9}')
    await settle()
    reply = wire.sent[-1]
    assert (reply["type"], reply["ref"], reply["offset"]) == ("history", 9, 3)
    assert [m["body"] for m in reply["messages"]] == ["b", "c"]


async def test_history_on_a_node_without_history_is_empty(
    node: Node, backend: GatedBackend
) -> None:
    connection, wire = connect(node)
    send(connection, '{"type":"join","room":"lobby","ref":1}')
    await settle()
    send(connection, '{"type":"history","room":"lobby","ref":2}')
    await settle()
    assert wire.sent[-1] == {"type": "history", "ref": 2, "room": "lobby", "messages": []}


# --- presence (docs/HISTORY-PRESENCE.md, "Presence") ------------------------------


async def test_presence_is_answered_with_every_member_of_the_room(node: Node) -> None:
    alice = Identity("alice", time.time() + 60, EVERY_ROOM)
    connection, wire = connect(node, identity=alice)
    other, _ = connect(node)
    send(connection, '{"type":"join","room":"lobby","ref":1}')
    send(other, '{"type":"join","room":"lobby","ref":1}')
    await settle()
    send(connection, '{"type":"presence","room":"lobby","ref":5}')
    await settle()
    assert wire.sent[-1] == {
        "type": "presence",
        "ref": 5,
        "room": "lobby",
        "count": 2,
        "users": 1,
        "members": [
            {"session": connection.session.id, "user": "alice"},
            {"session": other.session.id},
        ],
    }


async def test_presence_of_a_room_not_joined_is_not_member(node: Node) -> None:
    connection, wire = connect(node)
    send(connection, '{"type":"presence","room":"lobby","ref":5}')
    await settle()
    assert (wire.sent[-1]["code"], wire.sent[-1]["ref"]) == ("not_member", 5)


async def test_presence_while_the_store_is_away_is_unavailable_and_the_connection_stays(
    node: Node, backend: GatedBackend
) -> None:
    connection, wire = connect(node)
    send(connection, '{"type":"join","room":"lobby","ref":1}')
    await settle()
    backend.presence_down = True
    send(connection, '{"type":"presence","room":"lobby","ref":5}')
    await settle()
    send(connection, '{"type":"ping","ref":6}')
    assert wire.replies()[-2:] == [("error", 5), ("pong", 6)]
    assert wire.sent[-2]["code"] == "unavailable"
    assert wire.closes == []
