"""Checking a room's positions as one member sees them (no I/O).

docs/HISTORY-PRESENCE.md, "Positions": a room's messages carry offsets that
go up by exactly 1, cluster-wide, and every message after the position a
member joined at reaches it exactly once, in offset order. A sender never
receives its own messages: it learns their offsets from the ``ok`` of its
``say``. So, for one member, the offsets it receives and the offsets of its
own says together must be every offset after its join position, each once.

Invariants:
    * ``last`` is the highest offset received (or the join position); -1
      while no position is known (history off, or before the first one).
    * ``gaps`` holds the offsets below ``last`` that were neither received
      nor given to one of this member's says (yet: an ``ok`` may come after
      a later message); ``own`` the offsets of its says above ``last``.
    * ``backwards`` counts messages whose offset was not above ``last``: a
      duplicate, or a message overtaken by a later one.
    * An epoch is checked only when the offsets do not follow: a new epoch
      restarts at offset 1, which follows ``last`` only when ``last`` was 0
      (nothing was said in the old one, so nothing can be lost there).
"""

from __future__ import annotations

import msgspec

__all__ = ["MAX_TRACKED_GAP", "OffsetCheck"]

MAX_TRACKED_GAP = 100_000
"""A jump wider than this is counted as gaps at once, not offset by offset
(no own say can explain it: a run says far fewer messages per member)."""


class OffsetCheck:
    """The offsets one member saw in its room, and what they lack."""

    __slots__ = ("_untracked", "backwards", "epoch", "epoch_changes", "gaps", "last", "own")

    def __init__(self) -> None:
        self.last = -1
        self.epoch = ""
        self.gaps: set[int] = set()
        self.own: set[int] = set()
        self.backwards = 0
        self.epoch_changes = 0
        self._untracked = 0

    def joined(self, offset: int, epoch: str) -> None:
        """The join's ``ok`` gave the room's position: later messages follow it."""
        self.last, self.epoch = offset, epoch

    def said(self, offset: int, epoch: str) -> None:
        """One of this member's says got ``offset`` (it is never delivered back)."""
        if self.last >= 0 and epoch != self.epoch:
            return  # said in another epoch than the one received: the jump tells
        if offset in self.gaps:
            self.gaps.discard(offset)
        elif offset > self.last:
            self.own.add(offset)
        else:
            self.backwards += 1  # the room already delivered this offset to us

    def jump(self, offset: int, epoch: str | msgspec.UnsetType) -> int:
        """A message whose offset is not ``last + 1``; returns the new ``last``.

        The caller takes the fast path (``offset == last + 1``) itself. A
        missing epoch beside an offset reads as the empty one (a change).
        """
        if not isinstance(epoch, str):
            epoch = ""
        last = self.last
        if last < 0:
            self.last, self.epoch = offset, epoch
            return offset
        if epoch != self.epoch:
            self.epoch_changes += 1
            self.epoch = epoch
            self.gaps.clear()
            self.own.clear()
            self.last = offset
            return offset
        if offset <= last:
            self.backwards += 1
            self.gaps.discard(offset)
            return last
        if offset - last > MAX_TRACKED_GAP:
            self._untracked += offset - last - 1
        else:
            for skipped in range(last + 1, offset):
                if skipped in self.own:
                    self.own.discard(skipped)
                else:
                    self.gaps.add(skipped)
        self.last = offset
        return offset

    def gap_count(self) -> int:
        """Offsets never received that were not this member's own says."""
        return len(self.gaps) + self._untracked
