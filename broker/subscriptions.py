"""Reference-counted rooms: the first local member of a room opens it on the
node (subscribes, and with history learns where the room stands), the last
one to leave closes it.

Concurrent joins of a room that is still being opened wait for the same
opening, so no joiner is told ``ok`` before the node receives the room.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["RoomSubscriptions"]


class RoomSubscriptions:
    """Counts the sessions of this node that hold (or are acquiring) each room.

    Args:
        open_room: opens a room on the node (raises ``BackendUnavailable``).
        close_room: closes it (ordered after earlier calls; never blocks).
    """

    def __init__(
        self,
        open_room: Callable[[str], Coroutine[Any, Any, None]],
        close_room: Callable[[str], None],
    ) -> None:
        self._open = open_room
        self._close = close_room
        self._refs: dict[str, int] = {}
        self._ready: dict[str, asyncio.Task[None]] = {}

    async def acquire(self, room: str) -> None:
        """Hold ``room``; returns once the node is subscribed to it.

        Raises:
            BackendUnavailable: the subscription failed (nothing is held).
        """
        self._refs[room] = self._refs.get(room, 0) + 1
        ready = self._ready.get(room)
        if ready is None:
            ready = asyncio.get_running_loop().create_task(self._open(room))
            self._ready[room] = ready
        try:
            # shield: one joiner giving up must not cancel the others' wait.
            await asyncio.shield(ready)
        except BaseException:
            self.release(room)
            raise

    def release(self, room: str) -> None:
        """Stop holding ``room``; the last holder unsubscribes the node."""
        left = self._refs[room] - 1
        if left:
            self._refs[room] = left
            return
        del self._refs[room]
        ready = self._ready.pop(room)
        if not ready.done():
            # Let it finish; the unsubscribe below is ordered after it.
            ready.add_done_callback(_consume_result)
        self._close(room)


def _consume_result(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
