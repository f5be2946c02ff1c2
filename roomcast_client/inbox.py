"""A bounded queue of inbound events with a drop-oldest policy.

Policy: the reader never waits for the application (that would stall the
connection, and with it every request's reply). When ``maxsize`` events are
waiting and another arrives, the oldest waiting *room* event is dropped,
counted in :attr:`Inbox.dropped`, and a warning is logged once per overflow
episode (an episode ends when the application has emptied the queue).
Lifecycle events (:class:`Disconnected`, :class:`Reconnected`) are only
dropped when nothing else is left to drop.

An inbox may be given :class:`InboxHooks`: told of every item dropped and
every item handed to the application, and asked for a notice (a
:class:`~roomcast_client.events.Gap`) to hand out before the next item. The
client uses them to keep room positions honest (:mod:`roomcast_client.gaps`).

Invariants:
    * ``len(self) <= maxsize`` after every :meth:`put` (notices are kept by
      the hooks, one per room at most, outside the bound).
    * Once :meth:`end` is called, :meth:`get` returns what is left, then raises.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Generic, Protocol, TypeVar

from roomcast_client.events import Disconnected, Reconnected

__all__ = ["Inbox", "InboxHooks"]

log = logging.getLogger("roomcast_client")

T = TypeVar("T")


class InboxHooks(Protocol[T]):
    """What an inbox tells, and asks, about the items going through it."""

    def dropped(self, item: T) -> None:
        """``item`` was dropped unread."""

    def notice(self) -> T | None:
        """A notice to hand out before the next item, if any (taken)."""

    def delivered(self, item: T) -> None:
        """``item`` was handed to the application."""


class Inbox(Generic[T]):
    """Events waiting for the application.

    Args:
        maxsize: events kept at most (at least 1).
        name: how warnings name this queue.
        hooks: told of drops and deliveries, asked for notices.
    """

    def __init__(self, maxsize: int, name: str, hooks: InboxHooks[T] | None = None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.name = name
        self._hooks = hooks
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
        item = self._items[index]
        del self._items[index]
        self.dropped += 1
        if self._hooks is not None:
            self._hooks.dropped(item)
        if not self._overflowing:
            self._overflowing = True
            log.warning(
                "%s: %d events wait unread; dropping the oldest (%d dropped so far)",
                self.name,
                self.maxsize,
                self.dropped,
            )

    def get_nowait(self) -> T | None:
        """The oldest waiting event (a pending notice first), or ``None`` if there is none."""
        if not self._items:
            # A notice is only made when an item is dropped to make room for
            # another, so none can be pending here.
            return None
        hooks = self._hooks
        if hooks is not None and (notice := hooks.notice()) is not None:
            hooks.delivered(notice)
            return notice
        item = self._items.popleft()
        if not self._items:
            self._nonempty.clear()
            self._overflowing = False
        if hooks is not None:
            hooks.delivered(item)
        return item

    def settle(self) -> None:
        """Tell the hooks every waiting item and notice was delivered: the
        reader gave them up (a view was closed). Items stay readable."""
        hooks = self._hooks
        if hooks is None:
            return
        while (notice := hooks.notice()) is not None:
            hooks.delivered(notice)
        for item in self._items:
            hooks.delivered(item)

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
