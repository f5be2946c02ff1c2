"""Local membership (room -> this node's members) and local fan-out.

The hub never awaits: :meth:`Hub.fanout` frames a payload once and hands the
same bytes to every member's outbox, which only appends to a list. A member
that cannot keep up is dealt with by its outbox, never here.

Invariants:
    * A room is present in ``_rooms`` exactly while it has a local member.
    * A session appears at most once per room.
"""

from __future__ import annotations

from broker.frames import text_frame
from broker.outbox import Outbox

__all__ = ["Hub"]


class Hub:
    """Rooms of one node and the outboxes of their local members."""

    __slots__ = ("_rooms", "bytes_out", "deliveries", "fanouts")

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, Outbox]] = {}
        self.deliveries = 0
        self.fanouts = 0
        self.bytes_out = 0

    def add(self, room: str, session: str, outbox: Outbox) -> bool:
        """Make ``session`` a local member of ``room``.

        Returns:
            ``True`` if the session was not a member before.
        """
        members = self._rooms.setdefault(room, {})
        if session in members:
            return False
        members[session] = outbox
        return True

    def remove(self, room: str, session: str) -> bool:
        """Remove ``session`` from ``room``.

        Returns:
            ``True`` if it was a member.
        """
        members = self._rooms.get(room)
        if members is None or members.pop(session, None) is None:
            return False
        if not members:
            del self._rooms[room]
        return True

    def swap(self, room: str, session: str, old: Outbox, new: Outbox) -> bool:
        """Make ``new`` the outbox of ``session`` in ``room`` if it is ``old``.

        Returns:
            ``True`` if it was ``old`` (and is ``new`` now).
        """
        members = self._rooms.get(room)
        if members is None or members.get(session) is not old:
            return False
        members[session] = new
        return True

    def has_room(self, room: str) -> bool:
        """Whether ``room`` has at least one local member."""
        return room in self._rooms

    def members(self, room: str) -> tuple[str, ...]:
        """Session ids of the local members of ``room``."""
        return tuple(self._rooms.get(room, ()))

    def rooms(self) -> tuple[str, ...]:
        """Rooms with at least one local member."""
        return tuple(self._rooms)

    def fanout(self, room: str, exclude: str, payload: bytes) -> int:
        """Deliver ``payload`` to every local member of ``room`` but ``exclude``.

        Returns:
            The number of members it was handed to.
        """
        members = self._rooms.get(room)
        if not members:
            return 0
        frame = text_frame(payload)
        skip = members.get(exclude)
        count = 0
        for outbox in members.values():
            if outbox is not skip:
                outbox.send(frame, payload)
                count += 1
        self.fanouts += 1
        self.deliveries += count
        self.bytes_out += count * len(frame)
        return count

    def memberships(self) -> int:
        """Number of (room, local member) pairs."""
        return sum(len(members) for members in self._rooms.values())

    def stats(self) -> dict[str, int]:
        """Cheap counters for metrics and tests."""
        return {
            "rooms": len(self._rooms),
            "memberships": self.memberships(),
            "bytes_out": self.bytes_out,
            "fanouts": self.fanouts,
            "deliveries": self.deliveries,
        }
