"""In-process backend: the default for a single node (no Redis needed).

Several :class:`MemoryBackend` objects attached to one :class:`MemoryBus` form
a cluster inside one process, which the tests use to check cluster semantics
without Redis. A node started from the CLI has a bus of its own. The bus
keeps the rooms' history (:mod:`.memory_history`): positions are given and
messages kept at publish, in the same step that hands them to the nodes. It
also keeps the rooms' presence (:mod:`.memory_presence`), written by
``track`` at once: presence shows a change before anything the node
publishes afterwards, as the contract of ``Backend.track`` asks.
"""

from __future__ import annotations

import asyncio
from typing import Any

from broker.backends.base import (
    DeliverBatch,
    Delivery,
    HistoryRead,
    Membership,
    Position,
    PresenceHooks,
    PresenceRead,
)
from broker.backends.memory_history import MemoryHistory
from broker.backends.memory_presence import MemoryPresence

__all__ = ["MemoryBackend", "MemoryBus"]


class MemoryBus:
    """Rooms to the backends subscribed to them, the rooms' history and
    their presence, within one process.

    Args:
        history: the rooms' history (default: none kept, no positions).
    """

    def __init__(self, history: MemoryHistory | None = None) -> None:
        self.subscribers: dict[str, set[MemoryBackend]] = {}
        self.history = history if history is not None else MemoryHistory(0, 0.0, 0.0)
        self.presence = MemoryPresence()


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
        """Record ``membership`` in the bus's presence at once. No expiry and
        no reaping: the nodes of a bus live and die together."""
        self._bus.presence.track(membership, member)

    async def presence(self, room: str, limit: int) -> PresenceRead:
        """Who is in ``room`` on every node of the bus (see the contract)."""
        return self._bus.presence.read(room, limit)

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

    @property
    def history_size(self) -> int:
        """Messages kept per room (0: none, and no positions)."""
        return self._bus.history.size

    def publish(
        self,
        room: str,
        exclude: str,
        payload: bytes,
        published_at: float = 0.0,
        *,
        history: bool = True,
    ) -> asyncio.Future[Position | None]:
        """Give ``payload`` its position (with ``history``) and hand it to every
        subscribed node, this one included, on the next loop turn."""
        loop = asyncio.get_running_loop()
        position = None
        if history and self._bus.history.size:
            position, payload = self._bus.history.append(room, payload)
            delivery = Delivery(room, exclude, payload, published_at, *position)
        else:
            delivery = Delivery(room, exclude, payload, published_at)
        for peer in self._bus.subscribers.get(room, ()):
            loop.call_soon(peer._receive, delivery)
        self.published += 1
        accepted: asyncio.Future[Position | None] = loop.create_future()
        accepted.set_result(position)
        return accepted

    async def read_history(
        self, room: str, after: int = 0, before: int | None = None, limit: int | None = None
    ) -> HistoryRead:
        """The room's position and kept messages (see the contract)."""
        return self._bus.history.read(room, after, before, limit)

    async def rotate_epoch(self, room: str, stale_epoch: str) -> None:
        """Drop the room's history and position if still in ``stale_epoch``."""
        self._bus.history.rotate(room, stale_epoch)

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
