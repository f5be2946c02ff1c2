"""The order of one room's messages on one node: offsets in order, no
duplicates, gaps filled from history (docs/HISTORY-PRESENCE.md, "No lost
messages inside the cluster"). No I/O: the node reads history when this
module says a gap needs filling, and hands the result back.

The backend delivers a room's messages in the order the store gave them
offsets, so the usual arrival is the next offset and is handed to the members
at once. Anything else is explained here:

* an offset at or below the last one handed: a duplicate (a history read and
  the live stream overlapped), dropped;
* an offset beyond the next one, or another epoch: something was missed (the
  subscription was interrupted) or the room's history was reset; the arrival
  is held and the node reads history to fill the gap;
* before the node knows where the room stands (it is still reading the
  room's position after subscribing), every arrival is held.

Invariants:
    * ``offset`` is the last offset handed to the members in ``epoch``; each
      handed message had the next offset, except right after a fill that
      found history no longer holding what was missed (``lost`` counts those).
    * Every held arrival is of another epoch or beyond ``offset + 1``; held
      arrivals are released in offset order, each at most once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from broker.backends.base import Delivery, HistoryRead
from protocol import sender_of

__all__ = ["MAX_HELD", "RoomSequence"]

MAX_HELD = 10_000
"""Arrivals held per room while a gap is filled; past it the oldest is
handed on (a fill that never succeeds must not grow memory forever)."""


class _Held(NamedTuple):
    epoch: str
    offset: int


class RoomSequence:
    """The position of one room on this node, and what waits for a gap.

    Args:
        room: the room (for the deliveries a fill makes).
    """

    __slots__ = ("_held", "epoch", "filling", "lost", "offset", "room")

    def __init__(self, room: str) -> None:
        self.room = room
        self.epoch: str | None = None
        self.offset = 0
        self.filling = False
        self.lost = 0
        self._held: dict[_Held, Delivery] = {}

    @property
    def started(self) -> bool:
        """Whether the room's position is known (see :meth:`start`)."""
        return self.epoch is not None

    @property
    def gap(self) -> bool:
        """Whether something waits for a history read."""
        return bool(self._held)

    def take(self, delivery: Delivery) -> bool:
        """Whether ``delivery`` is the next message, to hand to members now.

        ``False``: it was dropped (a duplicate) or held (see :attr:`gap`).
        After a ``True``, :meth:`ready` may release held messages that now follow.
        """
        if delivery.epoch == self.epoch:
            offset = delivery.offset
            if offset == self.offset + 1:
                self.offset = offset
                return True
            if offset <= self.offset:
                return False
        self._hold(delivery)
        return False

    def ready(self) -> list[Delivery]:
        """Held messages that now follow :attr:`offset`, in order (removed)."""
        released: list[Delivery] = []
        held = self._held
        while held:
            following = held.pop(_Held(self.epoch or "", self.offset + 1), None)
            if following is None:
                break
            released.append(following)
            self.offset += 1
        return released

    def start(self, read: HistoryRead) -> list[Delivery]:
        """Set the position read right after subscribing; returns what was
        held meanwhile and follows it."""
        self.epoch, self.offset = read.epoch, read.offset
        return self._settle()

    def fill(self, read: HistoryRead) -> list[Delivery]:
        """Apply a history read made to fill a gap.

        Returns:
            The messages to hand to members, in order: the missing ones the
            read found, then the held ones that follow them.
        """
        handed: list[Delivery] = []
        if read.epoch != self.epoch:
            # The room's history was reset: every message of the new epoch is
            # new to the members, and nothing of the old one comes any more.
            self.epoch, self.offset = read.epoch, 0
        for offset, payload in read.messages:
            if offset <= self.offset:
                continue
            if offset > self.offset + 1:
                self.lost += offset - self.offset - 1
            # Its sender must not get it, as on the live path.
            exclude = sender_of(payload)
            handed.append(Delivery(self.room, exclude, payload, 0.0, offset, read.epoch))
            self.offset = offset
        if read.offset > self.offset:
            # Expired before they could be read: gone for every member.
            self.lost += read.offset - self.offset
            self.offset = read.offset
        handed.extend(self._settle())
        return handed

    def behind(self, read: HistoryRead, handed: int | None = None) -> bool:
        """Whether the store stands before this node in the same epoch: its
        offsets went backwards (it lost writes without changing the epoch).

        Args:
            read: a history read.
            handed: the offset this node had handed on when the read began
                (default: now); live messages may have moved it on since.
        """
        floor = self.offset if handed is None else handed
        return read.epoch == self.epoch and read.offset < floor

    def _settle(self) -> list[Delivery]:
        # The store's epoch is the truth: held arrivals of another epoch are
        # stale (or, if the store was reset again after the read, the next
        # arrival of that epoch starts another fill that reads them back).
        epoch, offset = self.epoch, self.offset
        for key in [key for key in self._held if key.epoch != epoch or key.offset <= offset]:
            del self._held[key]
        return self.ready()

    def _hold(self, delivery: Delivery) -> None:
        held = self._held
        if len(held) >= MAX_HELD:
            held.pop(next(iter(held)))
            self.lost += 1
        held[_Held(delivery.epoch, delivery.offset)] = delivery

    def held(self) -> Sequence[Delivery]:
        """What waits, for tests and stats."""
        return tuple(self._held.values())
