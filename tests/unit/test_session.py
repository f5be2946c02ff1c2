"""broker.session: one session's rules (PROTOCOL.md, "Semantics"), checked
with plain data: a request goes in, a plan comes out."""

from __future__ import annotations

import json

import msgspec

from broker.session import JoinRoom, LeaveRoom, Publish, Reply, Session, TokenBucket
from protocol import ErrorCode, Join, Leave, Ping, ProtocolError, Say


class FakeClock:
    """Monotonic seconds that move only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_session(max_rooms: int = 10, rate: float = 0, burst: float = 0) -> Session:
    return Session("s-me", max_rooms, TokenBucket(rate, burst, FakeClock()))


def member_of(*rooms: str, max_rooms: int = 10) -> Session:
    session = make_session(max_rooms)
    for room in rooms:
        session.joined(room)
    return session


def say(room: str, body: bytes = b'"hi"', ref: int | str | None = 1) -> Say:
    return Say(room=room, body=msgspec.Raw(body), ref=ref)


def assert_error(plan: object, code: ErrorCode, ref: object = 1) -> None:
    assert isinstance(plan, ProtocolError), plan
    assert plan.code is code
    assert plan.ref == ref


# --- join ------------------------------------------------------------------------


def test_join_asks_to_join_the_room() -> None:
    assert make_session().plan(Join(room="lobby", ref=1)) == JoinRoom("lobby", 1)


def test_join_does_not_make_a_member_before_the_node_confirms() -> None:
    session = make_session()
    session.plan(Join(room="lobby", ref=1))
    assert session.rooms == set()


def test_joined_records_membership() -> None:
    assert member_of("lobby").rooms == {"lobby"}


def test_join_of_a_joined_room_is_ok_without_action() -> None:
    plan = member_of("lobby").plan(Join(room="lobby", ref=4))
    assert isinstance(plan, Reply)
    assert json.loads(plan.payload) == {"type": "ok", "ref": 4}


def test_join_of_a_joined_room_without_ref_plans_nothing() -> None:
    assert member_of("lobby").plan(Join(room="lobby")) is None


def test_join_at_the_room_limit_is_too_many_rooms() -> None:
    plan = member_of("a", "b", max_rooms=2).plan(Join(room="c", ref=1))
    assert_error(plan, ErrorCode.TOO_MANY_ROOMS)


def test_join_below_the_room_limit_is_allowed() -> None:
    assert member_of("a", max_rooms=2).plan(Join(room="b", ref=1)) == JoinRoom("b", 1)


def test_join_of_a_joined_room_at_the_limit_is_still_ok() -> None:
    plan = member_of("a", "b", max_rooms=2).plan(Join(room="a", ref=1))
    assert isinstance(plan, Reply)


def test_room_limit_zero_means_unlimited() -> None:
    session = member_of(*(f"r{i}" for i in range(500)), max_rooms=0)
    assert session.plan(Join(room="one-more", ref=1)) == JoinRoom("one-more", 1)


# --- leave -----------------------------------------------------------------------


def test_leave_of_a_joined_room_asks_to_leave_it() -> None:
    assert member_of("lobby").plan(Leave(room="lobby", ref=2)) == LeaveRoom("lobby", 2)


def test_leave_ends_membership() -> None:
    session = member_of("lobby")
    session.plan(Leave(room="lobby", ref=2))
    assert session.rooms == set()


def test_leave_when_not_a_member_is_not_member() -> None:
    assert_error(make_session().plan(Leave(room="lobby", ref=1)), ErrorCode.NOT_MEMBER)


def test_leave_then_say_is_not_member() -> None:
    session = member_of("lobby")
    session.plan(Leave(room="lobby", ref=1))
    assert_error(session.plan(say("lobby", ref=2)), ErrorCode.NOT_MEMBER, ref=2)


# --- say -------------------------------------------------------------------------


def test_say_when_not_a_member_is_not_member() -> None:
    plan = make_session().plan(say("nope", ref=3))
    assert_error(plan, ErrorCode.NOT_MEMBER, ref=3)
    assert isinstance(plan, ProtocolError)
    assert "nope" in plan.message


def test_say_publishes_a_message_from_this_session() -> None:
    plan = member_of("lobby").plan(say("lobby", b'{"text":"hi"}', ref=5))
    assert isinstance(plan, Publish)
    assert (plan.room, plan.ref) == ("lobby", 5)
    assert json.loads(plan.payload) == {
        "type": "message",
        "room": "lobby",
        "from": "s-me",
        "body": {"text": "hi"},
    }


def test_say_keeps_the_body_bytes_untouched() -> None:
    body = b'{ "z" : 1.50, "a":[ ] ,"u":"\\u00e9"}'
    plan = member_of("lobby").plan(say("lobby", body))
    assert isinstance(plan, Publish)
    assert plan.payload == b'{"type":"message","room":"lobby","from":"s-me","body":' + body + b"}"


def test_say_without_ref_publishes_with_no_ref() -> None:
    plan = member_of("lobby").plan(say("lobby", ref=None))
    assert isinstance(plan, Publish)
    assert plan.ref is None


def test_not_member_error_comes_even_without_ref() -> None:
    assert_error(make_session().plan(say("nope", ref=None)), ErrorCode.NOT_MEMBER, ref=None)


# --- ping ------------------------------------------------------------------------


def test_ping_is_answered_with_pong_echoing_ref() -> None:
    plan = make_session().plan(Ping(ref="p-1"))
    assert isinstance(plan, Reply)
    assert json.loads(plan.payload) == {"type": "pong", "ref": "p-1"}


def test_ping_without_ref_is_answered_with_pong_ref_null() -> None:
    plan = make_session().plan(Ping())
    assert isinstance(plan, Reply)
    assert json.loads(plan.payload) == {"type": "pong", "ref": None}


# --- say rate --------------------------------------------------------------------


def rate_limited_member(rate: float, burst: float, clock: FakeClock) -> Session:
    session = Session("s-me", 10, TokenBucket(rate, burst, clock))
    session.joined("lobby")
    return session


def test_says_within_the_burst_are_published() -> None:
    session = rate_limited_member(rate=1, burst=3, clock=FakeClock())
    plans = [session.plan(say("lobby")) for _ in range(3)]
    assert all(isinstance(plan, Publish) for plan in plans)


def test_say_beyond_the_burst_is_rate_limited() -> None:
    session = rate_limited_member(rate=1, burst=3, clock=FakeClock())
    for _ in range(3):
        session.plan(say("lobby"))
    assert_error(session.plan(say("lobby", ref=9)), ErrorCode.RATE_LIMITED, ref=9)


def test_rate_limit_refills_with_time() -> None:
    clock = FakeClock()
    session = rate_limited_member(rate=2, burst=1, clock=clock)
    session.plan(say("lobby"))
    clock.now += 0.25
    assert isinstance(session.plan(say("lobby")), ProtocolError)
    clock.now += 0.5
    assert isinstance(session.plan(say("lobby")), Publish)


def test_refill_never_exceeds_the_burst() -> None:
    clock = FakeClock()
    session = rate_limited_member(rate=100, burst=2, clock=clock)
    clock.now += 3600
    plans = [session.plan(say("lobby")) for _ in range(3)]
    assert [type(plan) for plan in plans] == [Publish, Publish, ProtocolError]


def test_say_to_a_room_not_joined_does_not_use_the_rate() -> None:
    session = rate_limited_member(rate=1, burst=1, clock=FakeClock())
    session.plan(say("elsewhere"))
    assert isinstance(session.plan(say("lobby")), Publish)


def test_rate_zero_means_unlimited() -> None:
    bucket = TokenBucket(0, 0, FakeClock())
    assert all(bucket.take() for _ in range(10_000))
