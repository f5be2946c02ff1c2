"""Reference-counted backend subscriptions: the first local member of a room
subscribes the node, the last one to leave unsubscribes it.

Concurrent joins of a room that is still being subscribed wait for the same
subscription, so no joiner is told ``ok`` before the node receives the room.
"""

from __future__ import annotations

import asyncio

from broker.backends.base import Backend

__all__ = ["RoomSubscriptions"]


class RoomSubscriptions:
    """Counts the sessions of this node that hold (or are acquiring) each room."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
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
            ready = asyncio.get_running_loop().create_task(self._backend.subscribe(room))
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
        self._backend.unsubscribe(room)


def _consume_result(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
