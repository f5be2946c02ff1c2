"""Subscriptions waiting for Redis to confirm them.

Invariants:
    * Waiters of one channel are confirmed in the order they were added:
      Redis answers the SUBSCRIBEs of one connection in order.
    * A channel with no waiter left has no entry (nothing grows with the
      number of rooms ever joined).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

__all__ = ["Confirmations"]


class Confirmations:
    """Futures that a ``subscribe`` confirmation from Redis resolves."""

    def __init__(self) -> None:
        self._waiting: dict[bytes, deque[asyncio.Future[None]]] = {}

    def expect(self, channel: bytes) -> asyncio.Future[None]:
        """A future resolved by the next confirmation of ``channel``."""
        confirmed = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(channel, deque()).append(confirmed)
        return confirmed

    def confirm(self, channel: bytes) -> None:
        """Redis confirmed a subscription to ``channel``: resolve the oldest waiter."""
        waiting = self._waiting.get(channel)
        if not waiting:
            return  # a re-subscription after a rebuild that nobody awaits
        confirmed = waiting.popleft()
        if not waiting:
            del self._waiting[channel]
        if not confirmed.done():
            confirmed.set_result(None)

    def forget(self, channel: bytes, confirmed: asyncio.Future[None]) -> None:
        """Stop waiting with ``confirmed`` (it timed out or was cancelled)."""
        waiting = self._waiting.get(channel)
        if waiting is not None:
            with contextlib.suppress(ValueError):
                waiting.remove(confirmed)
            if not waiting:
                del self._waiting[channel]
