"""A node: the hub, the backend and the subscriptions wired together, and the
operations a connection asks of them.

Delivery rule (PROTOCOL.md, "Semantics": every other member receives a
message exactly once): a payload published by this node goes to the other
nodes through the backend, and to this node's own members when the backend
has accepted it, so a publish the backend refused reached nobody.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from typing import Any

from broker.backends.base import Backend, Delivery
from broker.hub import Hub
from broker.outbox import FlushScheduler, Outbox
from broker.subscriptions import RoomSubscriptions
from protocol import Joined, Left, encode

__all__ = ["Node", "new_node_id", "new_session_id"]

log = logging.getLogger("broker.node")


def new_node_id() -> str:
    """A random node id such as ``n-1a2b3c4d``."""
    return "n-" + secrets.token_hex(4)


def new_session_id() -> str:
    """A random session id such as ``s-0123456789ab``."""
    return "s-" + secrets.token_hex(6)


class Node:
    """One broker process's view of the cluster.

    Args:
        node_id: this node's id.
        backend: how payloads reach the other nodes.
    """

    def __init__(self, node_id: str, backend: Backend) -> None:
        self.id = node_id
        self.backend = backend
        self.hub = Hub()
        self._subscriptions = RoomSubscriptions(backend)
        self._scheduler: FlushScheduler | None = None
        self.draining = False
        self.sessions = 0
        self.publish_failures = 0
        self.slow_consumers = 0

    @property
    def scheduler(self) -> FlushScheduler:
        """The flush scheduler of this node's loop (after :meth:`start`)."""
        assert self._scheduler is not None, "Node.start() was not awaited"
        return self._scheduler

    async def start(self) -> None:
        """Connect the backend.

        Raises:
            BackendUnavailable: the backend cannot be reached.
        """
        self._scheduler = FlushScheduler(asyncio.get_running_loop())
        await self.backend.start(self._deliver)

    async def close(self) -> None:
        """Disconnect the backend."""
        await self.backend.close()

    def healthy(self) -> bool:
        """Ready for traffic: the backend is reachable and the node is not draining."""
        return not self.draining and self.backend.healthy()

    # --- operations ----------------------------------------------------------

    def publish(self, room: str, exclude: str, payload: bytes) -> asyncio.Future[None]:
        """Send ``payload`` to every member of ``room`` in the cluster but ``exclude``.

        Returns:
            The backend's acceptance; this node's members get the payload
            when it resolves without error.
        """
        accepted = self.backend.publish(room, exclude, payload)
        accepted.add_done_callback(lambda done: self._accepted(done, room, exclude, payload))
        return accepted

    async def join(self, room: str, session: str, outbox: Outbox) -> None:
        """Make ``session`` a member of ``room`` and tell the other members.

        Raises:
            BackendUnavailable: the node could not subscribe to the room.
        """
        await self._subscriptions.acquire(room)
        if self.hub.add(room, session, outbox):
            self.publish(room, session, encode(Joined(room=room, session=session)))
        else:
            self._subscriptions.release(room)

    def leave(self, room: str, session: str) -> None:
        """Remove ``session`` from ``room`` and tell the other members."""
        if self.hub.remove(room, session):
            self.publish(room, session, encode(Left(room=room, session=session)))
            self._subscriptions.release(room)

    def flush(self) -> None:
        """Write every queued frame now (before closing connections)."""
        self.scheduler.flush_now()

    def stats(self) -> dict[str, Any]:
        """Counters for metrics and tests."""
        return {
            "node": self.id,
            "sessions": self.sessions,
            "draining": self.draining,
            "publish_failures": self.publish_failures,
            "slow_consumers": self.slow_consumers,
            "hub": self.hub.stats(),
            "backend": self.backend.stats(),
        }

    # --- delivery ------------------------------------------------------------

    def _accepted(
        self, done: asyncio.Future[None], room: str, exclude: str, payload: bytes
    ) -> None:
        if done.cancelled():
            return
        if done.exception() is not None:
            self.publish_failures += 1
            return
        self.hub.fanout(room, exclude, payload)

    def _deliver(self, batch: Sequence[Delivery]) -> None:
        fanout = self.hub.fanout
        for room, exclude, payload in batch:
            fanout(room, exclude, payload)
