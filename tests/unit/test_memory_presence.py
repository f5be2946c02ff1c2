"""broker.backends.memory_presence: the memory backend's presence maps, past
what the backend contract suite (tests/backends/test_backend_presence.py) shows."""

from __future__ import annotations

from broker.backends.base import Membership
from broker.backends.memory_presence import MemoryPresence


def test_a_session_recorded_again_keeps_its_last_user_only() -> None:
    presence = MemoryPresence()
    presence.track(Membership("lobby", "s-1", "alice"), member=True)
    presence.track(Membership("lobby", "s-1", "bob"), member=True)
    read = presence.read("lobby", 10)
    assert (read.count, read.users, list(read.members)) == (1, 1, [("s-1", "bob")])


def test_ending_a_membership_never_recorded_changes_nothing() -> None:
    presence = MemoryPresence()
    presence.track(Membership("lobby", "s-1", "alice"), member=True)
    presence.track(Membership("lobby", "s-2", "alice"), member=False)
    presence.track(Membership("kitchen", "s-1", "alice"), member=False)
    read = presence.read("lobby", 10)
    assert (read.count, read.users, len(presence)) == (1, 1, 1)


def test_a_room_is_forgotten_when_its_last_member_left() -> None:
    presence = MemoryPresence()
    presence.track(Membership("lobby", "s-1", None), member=True)
    presence.track(Membership("lobby", "s-1", None), member=False)
    assert len(presence) == 0


def test_members_are_listed_in_the_order_they_joined() -> None:
    presence = MemoryPresence()
    for session in ("s-3", "s-1", "s-2"):
        presence.track(Membership("lobby", session, None), member=True)
    assert [session for session, _ in presence.read("lobby", 2).members] == ["s-3", "s-1"]
