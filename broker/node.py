"""A node: the hub, the backend and the subscriptions wired together, the
operations a connection asks of them, and the node's counters.

Delivery rule (PROTOCOL.md, "Semantics": every other member receives a
message exactly once): a payload published by this node goes to the other
nodes through the backend, and to this node's own members when the backend
has accepted it, so a publish the backend refused reached nobody.

Membership announcements (``joined``/``left``) that the backend refused
during an outage are kept and published again once it is back, so members on
other nodes are not left believing in a ghost. A ``left`` that cancels a
still-unsent ``joined`` of the same session and room removes both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from functools import partial
from typing import Any

import msgspec

from broker.backends.base import (
    Backend,
    BackendUnavailable,
    Delivery,
    Membership,
    PresenceHooks,
)
from broker.hub import Hub
from broker.metrics import LatencyHistogram
from broker.outbox import FlushScheduler, Outbox
from broker.subscriptions import RoomSubscriptions
from protocol import Joined, Left, encode

__all__ = ["Node", "new_node_id", "new_session_id"]

log = logging.getLogger("broker.node")

HOUSEKEEPING_INTERVAL = 0.5
MAX_UNANNOUNCED = 100_000


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
        self._housekeeping: asyncio.Task[None] | None = None
        # (room, session) -> (is_join, payload), in the order they happened.
        self._unannounced: dict[tuple[str, str], tuple[bool, bytes]] = {}
        self.draining = False
        self.sessions = 0
        self.connections_total = 0
        self.connections_refused = 0
        self.says = 0
        self.publish_failures = 0
        self.slow_consumers = 0
        self.errors: Counter[str] = Counter()
        self.latency = LatencyHistogram()
        self.loop_lag = 0.0

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
        await self.backend.start(self._deliver, PresenceHooks(self._lost, self._revived))
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

    async def join(self, room: str, session: str, outbox: Outbox, user: str | None = None) -> None:
        """Make ``session`` (of ``user``, if authenticated) a member of ``room``
        and tell the other members.

        Raises:
            BackendUnavailable: the node could not subscribe to the room.
        """
        await self._subscriptions.acquire(room)
        if outbox.closed:
            # The client went away while the node subscribed: nobody joined.
            self._subscriptions.release(room)
            return
        if self.hub.add(room, session, outbox):
            self.backend.track(Membership(room, session, user), member=True)
            joined = Joined(room=room, session=session, user=_user(user))
            announced = self._announce(room, session, True, encode(joined))
            if announced is not None:
                # Returning once the backend took the announcement orders it
                # before anything the joiner (or anyone it tells) does next.
                await asyncio.wait([announced])
        else:
            self._subscriptions.release(room)

    def leave(
        self, room: str, session: str, user: str | None = None
    ) -> asyncio.Future[None] | None:
        """Remove ``session`` (of ``user``, if authenticated) from ``room`` and
        tell the other members.

        Returns:
            The announcement's acceptance by the backend, if one was published.
        """
        if not self.hub.remove(room, session):
            return None
        self.backend.track(Membership(room, session, user), member=False)
        left = Left(room=room, session=session, user=_user(user))
        announced = self._announce(room, session, False, encode(left))
        self._subscriptions.release(room)
        return announced

    def flush(self) -> None:
        """Write every queued frame now (before closing connections)."""
        self.scheduler.flush_now()

    def stats(self) -> dict[str, Any]:
        """Counters for tests and debugging."""
        return {
            "node": self.id,
            "sessions": self.sessions,
            "draining": self.draining,
            "says": self.says,
            "publish_failures": self.publish_failures,
            "slow_consumers": self.slow_consumers,
            "unannounced": len(self._unannounced),
            "errors": dict(self.errors),
            "hub": self.hub.stats(),
            "backend": self.backend.stats(),
        }

    # --- announcements -------------------------------------------------------

    def _announce(
        self, room: str, session: str, is_join: bool, payload: bytes
    ) -> asyncio.Future[None] | None:
        key = (room, session)
        if key in self._unannounced:
            # Still waiting to tell the cluster about the opposite change:
            # both cancel out, and nobody elsewhere needs to hear of either.
            del self._unannounced[key]
            return None
        accepted = self.publish(room, session, payload)
        accepted.add_done_callback(partial(self._announced, key, is_join, payload))
        return accepted

    def _announced(
        self, key: tuple[str, str], is_join: bool, payload: bytes, done: asyncio.Future[None]
    ) -> None:
        # Only what certainly was not sent is sent again: an OutcomeUnknown
        # may have reached the others, and a second copy would be a duplicate.
        if done.cancelled() or not isinstance(done.exception(), BackendUnavailable):
            return
        if len(self._unannounced) >= MAX_UNANNOUNCED:
            oldest = next(iter(self._unannounced))
            del self._unannounced[oldest]
            log.warning("too many unannounced membership changes; dropped %s", oldest)
        self._unannounced[key] = (is_join, payload)

    def _lost(self, memberships: Sequence[Membership]) -> None:
        # Members of a node that died: its sessions are gone, so their `left`
        # is announced on its behalf (once, by the node that reaped it).
        # Through _announce, so that a left refused now is published again.
        for room, session, user in memberships:
            left = Left(room=room, session=session, user=_user(user))
            self._announce(room, session, False, encode(left))

    def _revived(self, memberships: Sequence[Membership]) -> None:
        # The cluster took this node for dead; its members are still here.
        for room, session, user in memberships:
            joined = Joined(room=room, session=session, user=_user(user))
            self._announce(room, session, True, encode(joined))

    def _retry_announcements(self) -> None:
        pending, self._unannounced = self._unannounced, {}
        if pending:
            log.info("re-announcing %d membership changes after a backend outage", len(pending))
        for (room, session), (is_join, payload) in pending.items():
            accepted = self.publish(room, session, payload)
            accepted.add_done_callback(partial(self._announced, (room, session), is_join, payload))

    async def _housekeep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
            self.loop_lag = max(0.0, loop.time() - started - HOUSEKEEPING_INTERVAL)
            if self._unannounced and self.backend.healthy():
                self._retry_announcements()

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
            self.publish_failures += 1
            return
        if self.hub.fanout(room, exclude, payload):
            self.latency.observe(time.time() - published_at)

    def _deliver(self, batch: Sequence[Delivery]) -> None:
        fanout, observe, now = self.hub.fanout, self.latency.observe, time.time()
        for room, exclude, payload, published_at in batch:
            if fanout(room, exclude, payload):
                observe(now - published_at)


def _user(user: str | None) -> str | msgspec.UnsetType:
    # An anonymous session's joined/left carry no `user` field at all.
    return msgspec.UNSET if user is None else user
