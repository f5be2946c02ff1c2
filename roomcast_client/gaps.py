"""The hooks of one event queue: messages it drops become a :class:`Gap`
notice, and what it hands to the application moves the room positions
(:mod:`roomcast_client.positions`). No I/O.

Invariants:
    * At most one pending gap per room: later drops of the same room (and
      epoch) widen it; a drop in another epoch replaces it (a gap in an
      epoch the room has left says nothing useful about the new one).
    * A gap is handed out before any later event of its queue, so the
      application hears of it before the room's next message.
"""

from __future__ import annotations

import msgspec

from protocol import Message
from roomcast_client.events import Event, Gap
from roomcast_client.positions import Positions

__all__ = ["RoomTracking"]


class RoomTracking:
    """:class:`~roomcast_client.inbox.InboxHooks` of one queue.

    Args:
        positions: the client's room positions.
    """

    def __init__(self, positions: Positions) -> None:
        self._positions = positions
        self._gaps: dict[str, Gap] = {}

    def dropped(self, item: Event) -> None:
        """Record a dropped message of a room with history as a gap."""
        if not isinstance(item, Message) or isinstance(item.epoch, msgspec.UnsetType):
            return
        assert isinstance(item.offset, int)
        known = self._gaps.get(item.room)
        if known is None or known.epoch != item.epoch:
            gap = Gap(item.room, item.epoch, item.offset - 1, item.offset, 1)
        else:
            gap = Gap(
                item.room,
                item.epoch,
                min(known.after_offset, item.offset - 1),
                max(known.last_offset, item.offset),
                known.dropped + 1,
            )
        self._gaps[item.room] = gap

    def notice(self) -> Gap | None:
        """The oldest pending gap, taken."""
        if not self._gaps:
            return None
        room = next(iter(self._gaps))
        return self._gaps.pop(room)

    def delivered(self, item: Event) -> None:
        """Tell the positions the application took ``item``."""
        self._positions.delivered(item)
