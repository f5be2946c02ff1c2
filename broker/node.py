"""A node: the hub, the backend and the subscriptions wired together, and the
operations a connection asks of them (publish, join, leave).

Delivery rule (PROTOCOL.md, "Semantics": every other member receives a
message exactly once): a payload published by this node goes to the other
nodes through the backend, and to this node's own members when the backend
has accepted it, so a publish the backend refused reached nobody.

Join and leave each read top-down in one method, and both resolve the same
way: once the backend settled the membership announcement (``joined`` or
``left``), so the ``ok`` a client gets is ordered after what the other
members are told. Announcements the backend refused are kept and sent again
(:mod:`broker.announcements`).

Invariants:
    * A session is in ``hub`` for a room exactly while this node holds the
      room's subscription on its behalf, and the backend tracks that
      membership (for crash recovery).
    * A join whose client went away while the node subscribed leaves no trace:
      no hub entry, no subscription held, no announcement.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from broker.announcements import Announcements
from broker.backends.base import Backend, Delivery, Membership, PresenceHooks
from broker.counters import Counters
from broker.hub import Hub
from broker.outbox import FlushScheduler, Outbox
from broker.subscriptions import RoomSubscriptions

__all__ = ["HOUSEKEEPING_INTERVAL", "Node", "new_node_id", "new_session_id"]

HOUSEKEEPING_INTERVAL = 0.5


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

    Attributes:
        counters: what this node counts (read by :mod:`broker.metrics`).
        draining: set once the node stops taking new clients.
    """

    def __init__(self, node_id: str, backend: Backend) -> None:
        self.id = node_id
        self.backend = backend
        self.hub = Hub()
        self.counters = Counters()
        self.draining = False
        self._subscriptions = RoomSubscriptions(backend)
        self._announcements = Announcements(self.publish)
        self._scheduler: FlushScheduler | None = None
        self._housekeeping: asyncio.Task[None] | None = None

    @property
    def scheduler(self) -> FlushScheduler:
        """The flush scheduler of this node's loop (after :meth:`start`)."""
        assert self._scheduler is not None, "Node.start() was not awaited"
        return self._scheduler

    async def start(self) -> None:
        """Connect the backend and start housekeeping.

        Raises:
            BackendUnavailable: the backend cannot be reached.
        """
        loop = asyncio.get_running_loop()
        self._scheduler = FlushScheduler(loop)
        announcements = self._announcements
        await self.backend.start(
            self._deliver, PresenceHooks(announcements.lost, announcements.revived)
        )
        self._housekeeping = loop.create_task(self._housekeep(), name="node-housekeeping")

    async def close(self) -> None:
        """Stop housekeeping and disconnect the backend."""
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
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
        published_at = time.time()
        accepted = self.backend.publish(room, exclude, payload, published_at)
        accepted.add_done_callback(
            lambda done: self._accepted(done, room, exclude, payload, published_at)
        )
        return accepted

    async def join(self, room: str, session: str, outbox: Outbox, user: str | None = None) -> bool:
        """Make ``session`` (of ``user``, if authenticated) a member of ``room``
        and tell the other members.

        Returns:
            Once the ``joined`` announcement was settled by the backend (so
            that it is ordered before anything the joiner does next): ``True``
            if the session is a member now, ``False`` if its client went away
            meanwhile (then nothing happened).

        Raises:
            BackendUnavailable: the node could not subscribe to the room.
        """
        await self._subscriptions.acquire(room)
        if outbox.closed:
            # The client went away while the node subscribed: nobody joined.
            self._subscriptions.release(room)
            return False
        if not self.hub.add(room, session, outbox):
            self._subscriptions.release(room)  # a member already: hold the room once
            return True
        membership = Membership(room, session, user)
        self.backend.track(membership, member=True)
        await _settled(self._announcements.joined(membership))
        return True

    def leave(self, room: str, session: str, user: str | None = None) -> asyncio.Future[None]:
        """Remove ``session`` (of ``user``, if authenticated) from ``room`` at
        once and tell the other members.

        Returns:
            A future that resolves (never fails) once the ``left``
            announcement was settled by the backend; at once if there was
            nothing to announce (not a member, or a ``joined`` that was never
            sent). Closing connections need not wait for it.
        """
        if not self.hub.remove(room, session):
            return _settled(None)
        membership = Membership(room, session, user)
        self.backend.track(membership, member=False)
        announced = self._announcements.left(membership)
        self._subscriptions.release(room)
        return _settled(announced)

    def flush(self) -> None:
        """Write every queued frame now (before closing connections)."""
        self.scheduler.flush_now()

    def stats(self) -> dict[str, Any]:
        """Counters for tests and debugging."""
        counters = self.counters
        return {
            "node": self.id,
            "sessions": counters.sessions,
            "draining": self.draining,
            "says": counters.says,
            "publish_failures": counters.publish_failures,
            "slow_consumers": counters.slow_consumers,
            "unannounced": len(self._announcements),
            "errors": dict(counters.errors),
            "hub": self.hub.stats(),
            "backend": self.backend.stats(),
        }

    # --- housekeeping --------------------------------------------------------

    async def _housekeep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
            self.counters.loop_lag = max(0.0, loop.time() - started - HOUSEKEEPING_INTERVAL)
            if self._announcements and self.backend.healthy():
                self._announcements.retry()

    # --- delivery ------------------------------------------------------------

    def _accepted(
        self,
        done: asyncio.Future[None],
        room: str,
        exclude: str,
        payload: bytes,
        published_at: float,
    ) -> None:
        if done.cancelled():
            return
        if done.exception() is not None:
            self.counters.publish_failures += 1
            return
        if self.hub.fanout(room, exclude, payload):
            self.counters.latency.observe(time.time() - published_at)

    def _deliver(self, batch: Sequence[Delivery]) -> None:
        fanout, observe, now = self.hub.fanout, self.counters.latency.observe, time.time()
        for room, exclude, payload, published_at in batch:
            if fanout(room, exclude, payload):
                observe(now - published_at)


def _settled(announced: asyncio.Future[None] | None) -> asyncio.Future[None]:
    # The one way join and leave wait for their announcement: a future that
    # resolves when the backend settled it, whether it accepted or refused it
    # (a refused one is in the ledger, to be sent again).
    told: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    if announced is None:
        told.set_result(None)
    else:
        announced.add_done_callback(partial(_resolve, told))
    return told


def _resolve(told: asyncio.Future[None], _: asyncio.Future[None]) -> None:
    if not told.done():  # a waiter may have been cancelled meanwhile
        told.set_result(None)
