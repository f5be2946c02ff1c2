"""A bounded queue of inbound events with a drop-oldest policy.

Policy: the reader never waits for the application (that would stall the
connection, and with it every request's reply). When ``maxsize`` events are
waiting and another arrives, the oldest waiting *room* event is dropped,
counted in :attr:`Inbox.dropped`, and a warning is logged once per overflow
episode (an episode ends when the application has emptied the queue).
Lifecycle events (:class:`Disconnected`, :class:`Reconnected`) are only
dropped when nothing else is left to drop.

Invariants:
    * ``len(self) <= maxsize`` after every :meth:`put`.
    * Once :meth:`end` is called, :meth:`get` returns what is left, then raises.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Generic, TypeVar

from roomcast_client.events import Disconnected, Reconnected

__all__ = ["Inbox"]

log = logging.getLogger("roomcast_client")

T = TypeVar("T")


class Inbox(Generic[T]):
    """Events waiting for the application.

    Args:
        maxsize: events kept at most (at least 1).
        name: how warnings name this queue.
    """

    def __init__(self, maxsize: int, name: str) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.name = name
        self.dropped = 0
        self._items: deque[T] = deque()
        self._nonempty = asyncio.Event()
        self._overflowing = False
        self._ended = False
        self._end_error: BaseException | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        """Append ``item``, dropping the oldest room event if the queue is full."""
        if self._ended:
            return
        if len(self._items) >= self.maxsize:
            self._drop_oldest()
        self._items.append(item)
        self._nonempty.set()

    def _drop_oldest(self) -> None:
        index = next(
            (
                i
                for i, item in enumerate(self._items)
                if not isinstance(item, Disconnected | Reconnected)
            ),
            0,
        )
        del self._items[index]
        self.dropped += 1
        if not self._overflowing:
            self._overflowing = True
            log.warning(
                "%s: %d events wait unread; dropping the oldest (%d dropped so far)",
                self.name,
                self.maxsize,
                self.dropped,
            )

    def get_nowait(self) -> T | None:
        """The oldest waiting event, or ``None`` if there is none."""
        if not self._items:
            return None
        item = self._items.popleft()
        if not self._items:
            self._nonempty.clear()
            self._overflowing = False
        return item

    async def get(self) -> T:
        """Wait for the oldest event.

        Raises:
            StopAsyncIteration: the queue ended cleanly and is empty.
            BaseException: the error the queue ended with, once it is empty.
        """
        while True:
            item = self.get_nowait()
            if item is not None:
                return item
            if self._ended:
                if self._end_error is not None:
                    raise self._end_error
                raise StopAsyncIteration
            await self._nonempty.wait()

    def end(self, error: BaseException | None = None) -> None:
        """Accept no more events; :meth:`get` raises ``error`` once drained.

        Args:
            error: what the consumer gets after the last event; ``None`` ends
                iteration quietly.
        """
        if self._ended:
            return
        self._ended = True
        self._end_error = error
        self._nonempty.set()
