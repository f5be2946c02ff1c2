"""In-process backend: the default for a single node (no Redis needed).

Several :class:`MemoryBackend` objects attached to one :class:`MemoryBus` form
a cluster inside one process, which the tests use to check cluster semantics
without Redis. A node started from the CLI has a bus of its own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from broker.backends.base import DeliverBatch, Delivery, Membership, PresenceHooks

__all__ = ["MemoryBackend", "MemoryBus"]


class MemoryBus:
    """Rooms to the backends subscribed to them, within one process."""

    def __init__(self) -> None:
        self.subscribers: dict[str, set[MemoryBackend]] = {}


class MemoryBackend:
    """A :class:`~broker.backends.base.Backend` whose other nodes share its bus."""

    def __init__(self, bus: MemoryBus | None = None) -> None:
        self._bus = bus if bus is not None else MemoryBus()
        self._deliver: DeliverBatch | None = None
        self._rooms: set[str] = set()
        self.published = 0
        self.received = 0

    async def start(self, deliver: DeliverBatch, presence: PresenceHooks | None = None) -> None:
        """Attach to the bus (its nodes share one process, so none dies alone)."""
        self._deliver = deliver

    def track(self, membership: Membership, member: bool) -> None:
        """Nothing to record: the nodes of a bus live and die together."""

    async def close(self) -> None:
        """Detach from the bus."""
        for room in tuple(self._rooms):
            self.unsubscribe(room)
        self._deliver = None

    async def subscribe(self, room: str) -> None:
        """Receive ``room`` from now on."""
        self._rooms.add(room)
        self._bus.subscribers.setdefault(room, set()).add(self)

    def unsubscribe(self, room: str) -> None:
        """Stop receiving ``room``."""
        self._rooms.discard(room)
        peers = self._bus.subscribers.get(room)
        if peers is not None:
            peers.discard(self)
            if not peers:
                del self._bus.subscribers[room]

    def publish(
        self, room: str, exclude: str, payload: bytes, published_at: float = 0.0
    ) -> asyncio.Future[None]:
        """Hand ``payload`` to the other subscribed nodes on the next loop turn."""
        loop = asyncio.get_running_loop()
        delivery = Delivery(room, exclude, payload, published_at)
        for peer in self._bus.subscribers.get(room, ()):
            if peer is not self:
                loop.call_soon(peer._receive, delivery)
        self.published += 1
        accepted = loop.create_future()
        accepted.set_result(None)
        return accepted

    def healthy(self) -> bool:
        """Always reachable: it is this process."""
        return True

    def stats(self) -> dict[str, Any]:
        """Counters."""
        return {"backend": "memory", "published": self.published, "received": self.received}

    def _receive(self, delivery: Delivery) -> None:
        # A peer may have unsubscribed between the publish and this turn.
        if self._deliver is not None and delivery.room in self._rooms:
            self.received += 1
            self._deliver((delivery,))
