"""Room presence of the in-memory backend: the same contract as the Redis
store (docs/HISTORY-PRESENCE.md, "Presence"; ``Backend.track`` and
``Backend.presence`` in :mod:`broker.backends.base`) with two maps per room.

The nodes of one bus share one process, so they live and die together:
records need no expiry and no reaping here.

Invariants:
    * ``_rooms`` holds a room exactly while some session is in it; its
      ``sessions`` map each member session to its user (``None``:
      anonymous), in the order they joined.
    * A room's ``users`` holds every user with at least one session in
      ``sessions``, with that number of sessions: ``count`` and the distinct
      user count are ``len`` of the two maps, O(1) whatever the room's size.
"""

from __future__ import annotations

from itertools import islice

from broker.backends.base import Membership, PresenceRead

__all__ = ["MemoryPresence"]


class _Room:
    __slots__ = ("sessions", "users")

    def __init__(self) -> None:
        self.sessions: dict[str, str | None] = {}
        self.users: dict[str, int] = {}

    def add(self, session: str, user: str | None) -> None:
        if session in self.sessions:
            self.remove(session)  # recorded again: the last record wins
        self.sessions[session] = user
        if user is not None:
            self.users[user] = self.users.get(user, 0) + 1

    def remove(self, session: str) -> None:
        if session not in self.sessions:
            return
        user = self.sessions.pop(session)
        if user is None:
            return
        left = self.users[user] - 1
        if left:
            self.users[user] = left
        else:
            del self.users[user]


class MemoryPresence:
    """Who is in every room of one process."""

    def __init__(self) -> None:
        self._rooms: dict[str, _Room] = {}

    def __len__(self) -> int:
        """Rooms with at least one member."""
        return len(self._rooms)

    def track(self, membership: Membership, member: bool) -> None:
        """Record that ``membership`` began (``member``) or ended."""
        room, session, user = membership
        state = self._rooms.get(room)
        if member:
            if state is None:
                state = self._rooms[room] = _Room()
            state.add(session, user)
        elif state is not None:
            state.remove(session)
            if not state.sessions:
                del self._rooms[room]

    def read(self, room: str, limit: int) -> PresenceRead:
        """Who is in ``room``: counts in O(1), at most ``limit`` members
        listed (the earliest joined first)."""
        state = self._rooms.get(room)
        if state is None:
            return PresenceRead(0, 0, [], False)
        count = len(state.sessions)
        members = list(islice(state.sessions.items(), max(limit, 0)))
        return PresenceRead(count, len(state.users), members, len(members) < count)
