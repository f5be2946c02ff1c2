"""broker.session with a verified identity: room rights, ``user`` on
``message``, and ``refresh`` (docs/PROTOCOL-ADDITIONS.md), with plain data."""

from __future__ import annotations

import json

import msgspec
import pytest

from broker.session import JoinRoom, Publish, Reauthorized, Session, TokenBucket
from broker.tokens import Authenticator, load_authenticator
from protocol import ErrorCode, Join, ProtocolError, Refresh, Say
from tests.security.tokens import SECRET, hs256, rooms


@pytest.fixture
def authenticator() -> Authenticator:
    loaded = load_authenticator(SECRET, None)
    assert loaded is not None
    return loaded


def session_of(authenticator: Authenticator, token: str, *joined: str) -> Session:
    session = Session("s-me", 10, TokenBucket(0, 0), authenticator.verify(token), authenticator)
    for room in joined:
        session.joined(room)
    return session


def say(room: str) -> Say:
    return Say(room=room, body=msgspec.Raw(b'"hi"'), ref=1)


def assert_error(plan: object, code: ErrorCode) -> str:
    assert isinstance(plan, ProtocolError), plan
    assert plan.code is code
    assert plan.ref == 1
    return plan.message


def test_join_of_a_granted_room_is_planned(authenticator: Authenticator) -> None:
    session = session_of(authenticator, hs256(rooms=rooms(("team:42:*", "join"))))
    assert session.plan(Join(room="team:42:chat", ref=1)) == JoinRoom("team:42:chat", 1)


def test_join_of_a_room_not_granted_is_forbidden(authenticator: Authenticator) -> None:
    session = session_of(authenticator, hs256(rooms=rooms(("team:42:*", "join"))))
    assert_error(session.plan(Join(room="team:420", ref=1)), ErrorCode.FORBIDDEN)


def test_say_without_the_say_right_is_forbidden(authenticator: Authenticator) -> None:
    session = session_of(authenticator, hs256(rooms=rooms(("lobby", "join"))), "lobby")
    assert_error(session.plan(say("lobby")), ErrorCode.FORBIDDEN)


def test_message_carries_the_user_encoded_once(authenticator: Authenticator) -> None:
    session = session_of(authenticator, hs256(sub="carol"), "lobby")
    plan = session.plan(say("lobby"))
    assert isinstance(plan, Publish)
    assert json.loads(plan.payload) == {
        "type": "message",
        "room": "lobby",
        "from": "s-me",
        "body": "hi",
        "user": "carol",
    }


def test_refresh_with_a_valid_token_of_the_same_user_moves_the_expiry(
    authenticator: Authenticator,
) -> None:
    session = session_of(authenticator, hs256(exp_in=10))
    fresh = hs256(exp_in=3600)
    plan = session.plan(Refresh(token=fresh, ref=1))
    assert isinstance(plan, Reauthorized)
    assert plan.expires_at == authenticator.verify(fresh).expires_at
    assert plan.ref == 1


def test_refresh_replaces_the_grants(authenticator: Authenticator) -> None:
    session = session_of(authenticator, hs256(rooms=rooms(("a", "join"))))
    session.plan(Refresh(token=hs256(rooms=rooms(("b", "join"))), ref=1))
    assert isinstance(session.plan(Join(room="b", ref=1)), JoinRoom)
    assert_error(session.plan(Join(room="a", ref=1)), ErrorCode.FORBIDDEN)


def test_refresh_for_another_user_is_unauthorized(authenticator: Authenticator) -> None:
    session = session_of(authenticator, hs256(sub="alice"))
    plan = session.plan(Refresh(token=hs256(sub="mallory"), ref=1))
    assert assert_error(plan, ErrorCode.UNAUTHORIZED) == "the new token is for another user"
    assert session.user == "alice"


def test_refresh_with_an_invalid_token_is_unauthorized(authenticator: Authenticator) -> None:
    session = session_of(authenticator, hs256())
    plan = session.plan(Refresh(token=hs256(exp_in=-120), ref=1))
    assert assert_error(plan, ErrorCode.UNAUTHORIZED) == "token expired"


def test_refresh_that_drops_a_joined_room_is_forbidden(authenticator: Authenticator) -> None:
    session = session_of(authenticator, hs256(rooms=rooms(("a", "join"), ("b", "join"))), "a")
    plan = session.plan(Refresh(token=hs256(rooms=rooms(("b", "join"))), ref=1))
    assert "'a'" in assert_error(plan, ErrorCode.FORBIDDEN)


def test_refresh_in_anonymous_mode_is_unauthorized() -> None:
    session = Session("s-me", 10, TokenBucket(0, 0))
    plan = session.plan(Refresh(token=hs256(), ref=1))
    assert assert_error(plan, ErrorCode.UNAUTHORIZED) == "this server does not use tokens"


def test_anonymous_session_has_no_user_and_may_join_any_room() -> None:
    session = Session("s-me", 10, TokenBucket(0, 0))
    assert session.user is None
    assert session.plan(Join(room="anything", ref=1)) == JoinRoom("anything", 1)


def test_session_user_is_the_token_sub(authenticator: Authenticator) -> None:
    assert session_of(authenticator, hs256(sub="dave")).user == "dave"
