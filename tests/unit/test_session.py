"""broker.session: one session's rules (PROTOCOL.md, "Semantics"), checked
with plain data: a request goes in, a plan comes out."""

from __future__ import annotations

import json

import msgspec

from broker.config import Config, join_budget
from broker.grants import Identity, RoomGrant, TokenError
from broker.session import (
    JoinRoom,
    LeaveRoom,
    Publish,
    ReadHistory,
    ReadPresence,
    Reauthorized,
    Rejoin,
    Reply,
    Session,
    TokenBucket,
)
from protocol import (
    ErrorCode,
    History,
    Join,
    Leave,
    Ping,
    Position,
    Presence,
    ProtocolError,
    Refresh,
    Say,
)
from tests.support.fakes import FakeClock


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


# --- join/leave rate (issue 11) --------------------------------------------------


def room_changer(rate: float, burst: float, clock: FakeClock, max_rooms: int = 10) -> Session:
    return Session("s-me", max_rooms, TokenBucket(0, 0), join_limit=TokenBucket(rate, burst, clock))


def test_joins_within_the_join_burst_are_planned() -> None:
    session = room_changer(rate=1, burst=3, clock=FakeClock())
    plans = [session.plan(Join(room=f"r{i}", ref=i)) for i in range(3)]
    assert plans == [JoinRoom(f"r{i}", i) for i in range(3)]


def test_join_beyond_the_join_burst_is_rate_limited() -> None:
    session = room_changer(rate=1, burst=2, clock=FakeClock())
    session.plan(Join(room="a", ref=1))
    session.plan(Join(room="b", ref=2))
    assert_error(session.plan(Join(room="c", ref=3)), ErrorCode.RATE_LIMITED, ref=3)


def test_leaves_count_against_the_same_budget_as_joins() -> None:
    session = room_changer(rate=1, burst=2, clock=FakeClock())
    session.joined("a")
    assert session.plan(Leave(room="a", ref=1)) == LeaveRoom("a", 1)
    assert session.plan(Join(room="a", ref=2)) == JoinRoom("a", 2)
    session.joined("a")
    assert_error(session.plan(Leave(room="a", ref=3)), ErrorCode.RATE_LIMITED, ref=3)


def test_a_rate_limited_leave_keeps_the_membership() -> None:
    session = room_changer(rate=1, burst=0, clock=FakeClock())
    session.joined("a")
    session.plan(Leave(room="a", ref=1))
    assert session.rooms == {"a"}


def test_join_budget_refills_with_time() -> None:
    clock = FakeClock()
    session = room_changer(rate=2, burst=1, clock=clock)
    session.plan(Join(room="a", ref=1))
    clock.now += 0.5
    assert session.plan(Join(room="b", ref=2)) == JoinRoom("b", 2)


def test_join_of_a_joined_room_does_not_use_the_join_budget() -> None:
    session = room_changer(rate=1, burst=1, clock=FakeClock())
    session.joined("a")
    session.plan(Join(room="a", ref=1))
    assert session.plan(Join(room="b", ref=2)) == JoinRoom("b", 2)


def test_join_refused_at_the_room_limit_does_not_use_the_join_budget() -> None:
    session = room_changer(rate=1, burst=1, clock=FakeClock(), max_rooms=1)
    session.joined("a")
    assert_error(session.plan(Join(room="b", ref=1)), ErrorCode.TOO_MANY_ROOMS)
    assert session.plan(Leave(room="a", ref=2)) == LeaveRoom("a", 2)


def test_leave_of_a_room_not_joined_does_not_use_the_join_budget() -> None:
    session = room_changer(rate=1, burst=1, clock=FakeClock())
    assert_error(session.plan(Leave(room="a", ref=1)), ErrorCode.NOT_MEMBER)
    assert session.plan(Join(room="a", ref=2)) == JoinRoom("a", 2)


def test_default_budget_lets_a_session_leave_and_rejoin_every_room_at_once() -> None:
    config = Config(max_rooms_per_session=150, join_burst=10)
    rooms = [f"r{i}" for i in range(config.max_rooms_per_session)]
    session = Session(
        "s-me",
        config.max_rooms_per_session,
        TokenBucket(0, 0),
        join_limit=TokenBucket(config.join_rate, join_budget(config), FakeClock()),
    )
    for room in rooms:
        session.joined(room)
    leaves = [session.plan(Leave(room=room, ref=1)) for room in rooms]
    joins = [session.plan(Join(room=room, ref=1)) for room in rooms]
    assert all(isinstance(plan, LeaveRoom) for plan in leaves)
    assert all(isinstance(plan, JoinRoom) for plan in joins)


# --- rights and refresh, with a verifier that needs no JWT library ----------------


class FakeVerifier:
    """Verifies tokens by looking them up; any other token is refused."""

    def __init__(self, **identities: Identity) -> None:
        self.identities = identities

    def verify(self, token: str) -> Identity:
        if token not in self.identities:
            raise TokenError("bad token signature")
        return self.identities[token]


def identity(user: str = "alice", expires_at: float = 2000.0, *grants: RoomGrant) -> Identity:
    return Identity(user, expires_at, grants)


def grant(pattern: str, *rights: str) -> RoomGrant:
    return msgspec.convert({"pattern": pattern, "rights": list(rights)}, RoomGrant)


def token_session(verifier: FakeVerifier, start: Identity, *joined: str) -> Session:
    session = Session("s-me", 10, TokenBucket(0, 0), start, verifier)
    for room in joined:
        session.joined(room)
    return session


def test_join_of_a_room_no_grant_covers_is_forbidden() -> None:
    session = token_session(FakeVerifier(), identity("alice", 2000.0, grant("team:*", "join")))
    assert_error(session.plan(Join(room="lobby", ref=1)), ErrorCode.FORBIDDEN)


def test_say_without_the_say_right_is_forbidden() -> None:
    start = identity("alice", 2000.0, grant("lobby", "join"))
    assert_error(
        token_session(FakeVerifier(), start, "lobby").plan(say("lobby")), ErrorCode.FORBIDDEN
    )


def test_message_of_an_authenticated_session_carries_its_user() -> None:
    start = identity("alice", 2000.0, grant("*", "join", "say"))
    plan = token_session(FakeVerifier(), start, "lobby").plan(say("lobby"))
    assert isinstance(plan, Publish)
    assert json.loads(plan.payload)["user"] == "alice"


def test_refresh_with_a_verified_token_of_the_same_user_reauthorizes() -> None:
    later = identity("alice", 9000.0, grant("*", "join"))
    session = token_session(FakeVerifier(new=later), identity("alice", 2000.0, grant("*", "join")))
    assert session.plan(Refresh(token="new", ref=1)) == Reauthorized(9000.0, 1)
    assert session.identity == later


def test_refresh_with_a_refused_token_is_unauthorized_with_its_reason() -> None:
    session = token_session(FakeVerifier(), identity())
    plan = session.plan(Refresh(token="forged", ref=1))
    assert_error(plan, ErrorCode.UNAUTHORIZED)
    assert isinstance(plan, ProtocolError) and plan.message == "bad token signature"


def test_refresh_for_another_user_is_unauthorized_and_changes_nothing() -> None:
    start = identity("alice")
    session = token_session(FakeVerifier(other=identity("mallory")), start)
    assert_error(session.plan(Refresh(token="other", ref=1)), ErrorCode.UNAUTHORIZED)
    assert session.identity == start


def test_refresh_that_would_not_cover_a_joined_room_is_forbidden() -> None:
    narrower = identity("alice", 9000.0, grant("b", "join"))
    session = token_session(
        FakeVerifier(new=narrower), identity("alice", 2000.0, grant("*", "join")), "a"
    )
    assert_error(session.plan(Refresh(token="new", ref=1)), ErrorCode.FORBIDDEN)


def test_refresh_of_an_anonymous_session_is_unauthorized() -> None:
    assert_error(make_session().plan(Refresh(token="t", ref=1)), ErrorCode.UNAUTHORIZED)


# --- history and recovery (docs/HISTORY-PRESENCE.md) ------------------------------


def with_history(*rooms: str, size: int = 100) -> Session:
    session = Session("s-me", 10, TokenBucket(0, 0, FakeClock()), history_size=size)
    for room in rooms:
        session.joined(room)
    return session


def test_join_with_since_asks_to_recover_from_that_position() -> None:
    since = Position(offset=4, epoch="e-1")
    plan = with_history().plan(Join(room="lobby", ref=1, since=since))
    assert plan == JoinRoom("lobby", 1, since)


def test_join_of_a_joined_room_with_history_answers_the_current_position() -> None:
    plan = with_history("lobby").plan(Join(room="lobby", ref=2))
    assert plan == Rejoin("lobby", 2)


def test_history_of_a_joined_room_asks_to_read_it() -> None:
    plan = with_history("lobby").plan(History(room="lobby", limit=5, before=9, ref=3))
    assert plan == ReadHistory("lobby", 5, 9, 3)


def test_history_without_limit_or_before_reads_all_kept() -> None:
    assert with_history("lobby").plan(History(room="lobby")) == ReadHistory(
        "lobby", None, None, None
    )


def test_history_of_a_room_not_joined_is_not_member() -> None:
    assert_error(with_history().plan(History(room="lobby", ref=1)), ErrorCode.NOT_MEMBER)


def test_history_limit_above_the_history_size_is_a_bad_message_naming_limit() -> None:
    plan = with_history("lobby", size=10).plan(History(room="lobby", limit=11, ref=1))
    assert_error(plan, ErrorCode.BAD_MESSAGE)
    assert isinstance(plan, ProtocolError) and "limit" in plan.message


def test_history_on_a_node_without_history_reads_nothing_whatever_the_limit() -> None:
    plan = with_history("lobby", size=0).plan(History(room="lobby", limit=500, ref=1))
    assert plan == ReadHistory("lobby", 500, None, 1)


# --- presence (docs/HISTORY-PRESENCE.md, "Presence") ------------------------------


def test_presence_of_a_joined_room_asks_to_read_it() -> None:
    assert member_of("lobby").plan(Presence(room="lobby", ref=4)) == ReadPresence("lobby", 4)


def test_presence_of_a_room_not_joined_is_not_member() -> None:
    assert_error(member_of("other").plan(Presence(room="lobby", ref=4)), ErrorCode.NOT_MEMBER, 4)


def test_presence_after_leaving_the_room_is_not_member() -> None:
    session = member_of("lobby")
    session.plan(Leave(room="lobby", ref=1))
    assert_error(session.plan(Presence(room="lobby", ref=2)), ErrorCode.NOT_MEMBER, 2)
