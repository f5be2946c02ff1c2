"""What the ``presence`` bench takes for a right reply (no I/O)."""

from __future__ import annotations

import msgspec

import protocol
from broker.bench.presence_replies import is_right

ROOM = "bench-presence"
CAP = protocol.MAX_PRESENCE_MEMBERS


def reply(
    count: int,
    listed: int | None = None,
    users: int = 0,
    truncated: bool | msgspec.UnsetType = msgspec.UNSET,
    room: str = ROOM,
) -> protocol.PresenceReply:
    """A reply of ``count`` sessions listing ``listed`` distinct ones (as many
    as the cap allows, by default)."""
    shown = min(count, CAP) if listed is None else listed
    members = [protocol.PresenceMember(session=f"s-{i}") for i in range(shown)]
    return protocol.PresenceReply(
        ref=1, room=room, count=count, users=users, members=members, truncated=truncated
    )


def test_a_reply_listing_every_member_of_a_small_room_is_right() -> None:
    assert is_right(reply(51), ROOM, 51)


def test_a_reply_listing_the_cap_with_truncated_is_right_for_a_big_room() -> None:
    assert is_right(reply(CAP + 1, truncated=True), ROOM, CAP + 1)


def test_a_count_short_of_the_room_is_wrong() -> None:
    assert not is_right(reply(50), ROOM, 51)


def test_a_reply_of_another_room_is_wrong() -> None:
    assert not is_right(reply(51, room="elsewhere"), ROOM, 51)


def test_users_among_anonymous_sessions_is_wrong() -> None:
    assert not is_right(reply(51, users=1), ROOM, 51)


def test_fewer_members_listed_than_the_room_under_the_cap_is_wrong() -> None:
    assert not is_right(reply(51, listed=50), ROOM, 51)


def test_a_session_listed_twice_is_wrong() -> None:
    twice = reply(3)
    twice.members[2] = protocol.PresenceMember(session=twice.members[0].session)

    assert not is_right(twice, ROOM, 3)


def test_a_big_room_without_truncated_is_wrong() -> None:
    assert not is_right(reply(CAP + 1), ROOM, CAP + 1)


def test_truncated_on_a_room_within_the_cap_is_wrong() -> None:
    assert not is_right(reply(CAP, truncated=True), ROOM, CAP)
