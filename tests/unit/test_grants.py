"""broker.grants: which rooms a verified token covers, with plain data (no
JWT library: that is broker.tokens, tested in tests/security)."""

from __future__ import annotations

import pytest

from broker.grants import Identity, Right, RoomGrant, TokenError, pattern_matches, valid_pattern


def identity(pattern: str, *rights: Right) -> Identity:
    return Identity("alice", 0.0, (RoomGrant(pattern=pattern, rights=frozenset(rights)),))


@pytest.mark.parametrize("room", ["team:42:chat", "team:42:", "team:42:a:b"])
def test_a_prefix_pattern_covers_the_rooms_under_it(room: str) -> None:
    assert pattern_matches("team:42:*", room)


@pytest.mark.parametrize("room", ["team:420", "team:42", "xteam:42:chat"])
def test_a_prefix_pattern_covers_no_other_room(room: str) -> None:
    assert not pattern_matches("team:42:*", room)


def test_an_exact_pattern_covers_only_its_room() -> None:
    assert pattern_matches("lobby", "lobby")
    assert not pattern_matches("lobby", "lobby2")


@pytest.mark.parametrize("pattern", ["*", "lobby", "team:42:*", "a.b-c_d@e:*"])
def test_valid_patterns(pattern: str) -> None:
    assert valid_pattern(pattern)


@pytest.mark.parametrize("pattern", ["", "bad room", "a*b", "**", "x" * 129])
def test_invalid_patterns(pattern: str) -> None:
    assert not valid_pattern(pattern)


def test_an_identity_allows_a_right_its_grant_gives() -> None:
    assert identity("team:*", "join", "say").allows("team:1", "say")


def test_an_identity_allows_no_right_its_grant_does_not_give() -> None:
    assert not identity("lobby", "join").allows("lobby", "say")


def test_an_identity_without_grants_allows_nothing() -> None:
    assert not Identity("alice", 0.0, ()).allows("lobby", "join")


def test_a_token_error_carries_its_reason() -> None:
    assert TokenError("token expired").reason == "token expired"
