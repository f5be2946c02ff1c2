"""Room history of the in-memory backend: the same contract as the Redis
store (docs/HISTORY-PRESENCE.md, "Positions" and "Options") with a ring
buffer per room.

Invariants:
    * A room's offsets go 1, 2, 3, ... within its epoch; an epoch is random
      and new whenever the room's position is created (first message, or the
      position expired after ``meta_ttl`` without a message).
    * ``frames`` holds the last ``size`` messages (fewer once ``ttl`` passed
      without a message: then none), each with its position written in.
    * ``_rooms`` is ordered by last message, oldest first, so expired rooms
      are found at its front without a scan.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from broker.backends.base import HistoryRead, Position
from protocol import with_position

__all__ = ["MemoryHistory", "new_epoch"]


def new_epoch() -> str:
    """A fresh random epoch (never a counter: epochs are never reused)."""
    return "e-" + secrets.token_hex(6)


class _Room:
    __slots__ = ("epoch", "frames", "last", "offset")

    def __init__(self, size: int, now: float) -> None:
        self.epoch = new_epoch()
        self.offset = 0
        self.frames: deque[tuple[int, bytes]] = deque(maxlen=size)
        self.last = now


class MemoryHistory:
    """Positions and kept messages of every room of one process.

    Args:
        size: messages kept per room (0: no history, no positions).
        ttl: seconds messages are kept after the room's last message.
        meta_ttl: seconds the position is kept after the last message.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        size: int,
        ttl: float,
        meta_ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.size = size
        self._ttl = ttl
        self._meta_ttl = meta_ttl
        self._clock = clock
        self._rooms: OrderedDict[str, _Room] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rooms)

    def append(self, room: str, payload: bytes) -> tuple[Position, bytes]:
        """Give ``payload`` (a ``message`` frame) the room's next offset and keep it.

        Returns:
            Its position and the frame with the position written in.
        """
        now = self._clock()
        state = self._live(room, now)
        if state is None:
            state = self._rooms[room] = _Room(self.size, now)
        else:
            self._rooms.move_to_end(room)
            state.last = now
        state.offset += 1
        frame = with_position(payload, state.offset, state.epoch)
        state.frames.append((state.offset, frame))
        return Position(state.offset, state.epoch), frame

    def read(
        self, room: str, after: int = 0, before: int | None = None, limit: int | None = None
    ) -> HistoryRead:
        """The room's position and its kept messages with ``after < offset <
        before``, the newest ``limit`` of them, oldest first. A room without a
        position gets one (a join creates the room's history)."""
        now = self._clock()
        state = self._live(room, now)
        if state is None:
            state = self._rooms[room] = _Room(self.size, now)
        kept = [
            entry
            for entry in state.frames
            if entry[0] > after and (before is None or entry[0] < before)
        ]
        if limit is not None:
            kept = kept[-limit:] if limit > 0 else []
        return HistoryRead(state.epoch, state.offset, kept)

    def rotate(self, room: str, stale_epoch: str) -> None:
        """Start a new epoch if the room is still in ``stale_epoch``."""
        state = self._rooms.get(room)
        if state is not None and state.epoch == stale_epoch:
            del self._rooms[room]

    def _live(self, room: str, now: float) -> _Room | None:
        self._expire(now)
        state = self._rooms.get(room)
        if state is not None and now - state.last > self._ttl:
            state.frames.clear()
        return state

    def _expire(self, now: float) -> None:
        rooms = self._rooms
        while rooms:
            oldest = next(iter(rooms.values()))
            if now - oldest.last <= self._meta_ttl:
                return
            rooms.popitem(last=False)
