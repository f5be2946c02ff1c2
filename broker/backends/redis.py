"""Redis pub/sub backend: the only module that imports ``redis``.

One Redis channel per room, ``{namespace}:room:{room}``, subscribed while this
node has a local member of the room. A payload crosses Redis as
``{node}\\n{exclude}\\n{published_at}\\n{json}``: the JSON was encoded once by
the node where it was said, and receiving nodes forward it without decoding it.

Connections: one subscriber connection (a :class:`redis.asyncio.client.PubSub`
that this module owns, reads in batches and rebuilds after any failure) and
one publisher connection that sends every publish queued while the previous
pipeline was in flight as one pipeline, so publishes are batched under load
and keep their order.

Liveness ("no deaf nodes"): every ``canary_interval`` the node publishes a
canary on its own channel ``{namespace}:node:{node}`` and expects it back
through its own subscription. When none has come back for
``canary_timeout``, the node reports itself unhealthy and rebuilds its
subscriber connection.

Crash recovery ("no ghosts when a node dies"): each node keeps a heartbeat key
``{namespace}:alive:{node}`` (expiring after ``presence_ttl``), its name in the
set ``{namespace}:nodes``, and a hash ``{namespace}:members:{node}`` of its
sessions' memberships. Every node looks for names in the set whose heartbeat
expired; the one that wins ``SET {namespace}:reaped:{node} NX`` reads the dead
node's memberships and hands them to its node, which announces their
``left``. A node that was only cut off, and finds its name gone from the set
when it comes back, records its memberships again and announces their
``joined`` again.

Invariants:
    * ``_rooms`` is the set of rooms the node wants; after a reconnect the
      subscriber re-subscribes exactly those.
    * Publishes are never retried: a publish that failed may have reached
      Redis, and a retry could deliver it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from broker.backends.base import (
    BackendUnavailable,
    DeliverBatch,
    Delivery,
    Membership,
    PresenceHooks,
)

__all__ = ["RedisBackend", "redis_client_factory"]

log = logging.getLogger("broker.redis")

_IO_ERRORS = (RedisError, OSError, asyncio.TimeoutError)

ClientFactory = Callable[[], aioredis.Redis]

CLOSE_FLUSH_TIMEOUT = 2.0

_Batch = list[tuple[tuple[bytes, ...], "asyncio.Future[None] | None"]]
"""Queued commands with their acceptance: PUBLISH has a future, membership
records have none."""


def redis_client_factory(url: str, timeout: float = 5.0) -> ClientFactory:
    """Return a factory of clients for ``url`` that never retry on their own."""

    def connect() -> aioredis.Redis:
        return aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )

    return connect


class RedisBackend:
    """A :class:`~broker.backends.base.Backend` over Redis pub/sub.

    Args:
        connect: makes a new client (see :func:`redis_client_factory`).
        node: this node's id (no whitespace).
        namespace: prefix of every channel name.
        canary_interval: seconds between canaries.
        canary_timeout: seconds without a canary before the node is deaf.
        subscribe_timeout: seconds a subscription may take.
        presence_ttl: seconds without a heartbeat before other nodes take
            this one for dead and announce its members' ``left``.
    """

    def __init__(
        self,
        connect: ClientFactory,
        node: str,
        namespace: str = "roomcast",
        *,
        canary_interval: float = 1.0,
        canary_timeout: float = 3.0,
        subscribe_timeout: float = 5.0,
        presence_ttl: float = 10.0,
    ) -> None:
        self._connect = connect
        self._node = node.encode()
        self._room_prefix = f"{namespace}:room:".encode()
        self._node_channel = f"{namespace}:node:{node}".encode()
        self._canary_interval = canary_interval
        self._canary_timeout = canary_timeout
        self._subscribe_timeout = subscribe_timeout
        self._presence_ttl = presence_ttl
        self._nodes_key = f"{namespace}:nodes".encode()
        self._alive_prefix = f"{namespace}:alive:".encode()
        self._members_prefix = f"{namespace}:members:".encode()
        self._reaped_prefix = f"{namespace}:reaped:".encode()
        self._presence: PresenceHooks | None = None
        self._members: dict[bytes, bytes] = {}  # b"room\nsession" -> user (b"" if none)
        self._registered = False

        self._deliver: DeliverBatch | None = None
        self._rooms: set[str] = set()
        self._pending_subs: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._sub_client: aioredis.Redis | None = None
        self._pubsub: PubSub | None = None
        self._sub_lock = asyncio.Lock()
        self._sub_up = False
        self._pub_client: aioredis.Redis | None = None
        self._pub_queue: _Batch = []
        self._pub_wakeup = asyncio.Event()
        self._pub_drained = asyncio.Event()
        self._in_flight: _Batch = []
        self._pub_up = True
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._canary_seq = 0
        self._canary_sent: dict[int, float] = {}
        self._last_canary = 0.0

        self.published = 0
        self.received = 0
        self.publish_failures = 0
        self.reconnects = 0
        self.canary_misses = 0
        self.canary_lag = 0.0
        self.reaped_nodes = 0

    # --- lifecycle -----------------------------------------------------------

    async def start(self, deliver: DeliverBatch, presence: PresenceHooks | None = None) -> None:
        """Connect both connections and start the reader, publisher, canary and,
        with ``presence``, crash recovery.

        Raises:
            BackendUnavailable: Redis could not be reached.
        """
        self._deliver = deliver
        self._presence = presence
        self._pub_client = self._connect()
        try:
            await self._pub_client.ping()
            await self._open_subscriber()
            if presence is not None:
                await self._recover_previous_incarnation()
        except _IO_ERRORS as exc:
            await self._pub_client.aclose()
            raise BackendUnavailable(f"cannot reach Redis: {exc}") from exc
        self._last_canary = time.monotonic()
        self._spawn(self._read_loop(), "redis-reader")
        self._spawn(self._publish_loop(), "redis-publisher")
        self._spawn(self._canary_loop(), "redis-canary")
        if presence is not None:
            self._spawn(self._presence_loop(), "redis-presence")

    async def close(self) -> None:
        """Let queued publishes go out (for up to ``CLOSE_FLUSH_TIMEOUT``), then
        stop every task and close both connections; every publish future is
        settled when this returns."""
        self._closing = True
        # Cancelling the publisher mid-pipeline could leave its batch unsettled
        # (redis-py may swallow the cancellation), so first let it finish.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._publisher_idle(), CLOSE_FLUSH_TIMEOUT)
        for task in tuple(self._tasks):
            task.cancel()
        await asyncio.wait(self._tasks, timeout=CLOSE_FLUSH_TIMEOUT)
        self._fail_queued(BackendUnavailable("backend closed"))
        await self._close_subscriber()
        if self._pub_client is not None:
            if self._presence is not None:
                # A clean stop: leave nothing for the others to reap.
                with contextlib.suppress(*_IO_ERRORS):
                    pipe = self._pub_client.pipeline(transaction=False)
                    pipe.srem(self._nodes_key, self._node)
                    pipe.delete(self._alive_prefix + self._node, self._members_prefix + self._node)
                    await pipe.execute()
            await self._pub_client.aclose()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- subscriptions -------------------------------------------------------

    async def subscribe(self, room: str) -> None:
        """Subscribe to ``room``'s channel; returns once Redis confirmed it.

        Raises:
            BackendUnavailable: not confirmed within the subscribe timeout.
        """
        channel = self._room_prefix + room.encode()
        self._rooms.add(room)
        confirmed = asyncio.get_running_loop().create_future()
        self._pending_subs.setdefault(channel, deque()).append(confirmed)
        try:
            if self._sub_up and self._pubsub is not None:
                async with self._sub_lock:
                    await self._pubsub.subscribe(channel)
            # While reconnecting, the rebuilt subscriber subscribes every
            # room in _rooms and its confirmation resolves this future.
            await asyncio.wait_for(asyncio.shield(confirmed), self._subscribe_timeout)
        except _IO_ERRORS as exc:
            self._forget_pending(channel, confirmed)
            raise BackendUnavailable(f"cannot subscribe to {room!r}: {exc!r}") from exc

    def unsubscribe(self, room: str) -> None:
        """Unsubscribe from ``room``'s channel, after commands already sent."""
        self._rooms.discard(room)
        if self._sub_up and self._pubsub is not None:
            self._spawn(self._unsubscribe(self._pubsub, room), "redis-unsubscribe")

    async def _unsubscribe(self, pubsub: PubSub, room: str) -> None:
        channel = self._room_prefix + room.encode()
        try:
            async with self._sub_lock:
                if room not in self._rooms and pubsub is self._pubsub:
                    await pubsub.unsubscribe(channel)
        except _IO_ERRORS as exc:
            # The reader notices the broken connection and the rebuilt
            # subscriber leaves this room out.
            log.debug("unsubscribe %s failed: %r", room, exc)

    def _forget_pending(self, channel: bytes, confirmed: asyncio.Future[None]) -> None:
        waiting = self._pending_subs.get(channel)
        if waiting is not None:
            with contextlib.suppress(ValueError):
                waiting.remove(confirmed)
            if not waiting:
                del self._pending_subs[channel]

    async def _open_subscriber(self) -> None:
        client = self._connect()
        pubsub = client.pubsub()
        try:
            async with self._sub_lock:
                channels = [self._room_prefix + room.encode() for room in self._rooms]
                await pubsub.subscribe(self._node_channel, *channels)
        except BaseException:
            await _aclose(pubsub)
            await client.aclose()
            raise
        self._sub_client, self._pubsub = client, pubsub
        self._sub_up = True

    async def _close_subscriber(self) -> None:
        self._sub_up = False
        pubsub, client = self._pubsub, self._sub_client
        self._pubsub = self._sub_client = None
        with contextlib.suppress(*_IO_ERRORS):
            if pubsub is not None:
                await _aclose(pubsub)
            if client is not None:
                await client.aclose()

    async def _reconnect_subscriber(self) -> None:
        await self._close_subscriber()
        delay = 0.1
        while not self._closing:
            try:
                await self._open_subscriber()
            except _IO_ERRORS as exc:
                log.warning("redis subscriber reconnect failed: %r; retrying", exc)
                # Full jitter, so that many nodes do not reconnect in step.
                await asyncio.sleep(random.uniform(0, delay))
                delay = min(delay * 2, 5.0)
                continue
            self.reconnects += 1
            self._last_canary = time.monotonic()
            log.info("redis subscriber reconnected; %d rooms re-subscribed", len(self._rooms))
            return

    # --- reading -------------------------------------------------------------

    async def _read_loop(self) -> None:
        while not self._closing:
            pubsub = self._pubsub
            if pubsub is None:
                await self._reconnect_subscriber()
                continue
            try:
                message = await pubsub.get_message(timeout=None)
                batch: list[Delivery] = []
                # Drain what is already buffered, so the hub gets one batch.
                while message is not None:
                    self._handle(message, batch)
                    message = await pubsub.get_message(timeout=0)
            except Exception as exc:
                # redis-py raises RuntimeError, not an I/O error, for a PubSub
                # that the canary closed under the reader.
                if self._closing:
                    return
                log.warning("redis subscriber connection lost: %r", exc)
                await self._reconnect_subscriber()
                continue
            if batch and self._deliver is not None:
                self.received += len(batch)
                self._deliver(batch)

    def _handle(self, message: dict[str, Any], batch: list[Delivery]) -> None:
        kind = message["type"]
        channel: bytes = message["channel"]
        if kind == "message":
            if channel == self._node_channel:
                self._canary_back(message["data"])
                return
            node, exclude, published_at, payload = message["data"].split(b"\n", 3)
            if node != self._node:
                room = channel[len(self._room_prefix) :].decode()
                batch.append(Delivery(room, exclude.decode(), payload, float(published_at)))
        elif kind == "subscribe":
            waiting = self._pending_subs.get(channel)
            if waiting:
                future = waiting.popleft()
                if not waiting:
                    del self._pending_subs[channel]
                if not future.done():
                    future.set_result(None)

    # --- publishing ----------------------------------------------------------

    def publish(
        self, room: str, exclude: str, payload: bytes, published_at: float = 0.0
    ) -> asyncio.Future[None]:
        """Queue a publish; the returned future resolves when Redis accepted it."""
        accepted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        data = b"\n".join((self._node, exclude.encode(), repr(published_at).encode(), payload))
        self._enqueue((b"PUBLISH", self._room_prefix + room.encode(), data), accepted)
        return accepted

    def _enqueue(self, command: tuple[bytes, ...], accepted: asyncio.Future[None] | None) -> None:
        self._pub_queue.append((command, accepted))
        self._pub_wakeup.set()

    async def _publisher_idle(self) -> None:
        while self._pub_queue or self._in_flight:
            await self._pub_drained.wait()
            self._pub_drained.clear()

    async def _publish_loop(self) -> None:
        assert self._pub_client is not None
        while True:
            self._pub_drained.set()
            await self._pub_wakeup.wait()
            self._pub_wakeup.clear()
            batch, self._pub_queue = self._pub_queue, []
            if not batch:
                continue
            # Kept until settled, so that close() can fail it if cancelled.
            self._in_flight = batch
            await self._send(batch)
            self._in_flight = []

    async def _send(self, batch: _Batch) -> None:
        assert self._pub_client is not None
        pipe = self._pub_client.pipeline(transaction=False)
        for command, _ in batch:
            pipe.execute_command(*command)
        try:
            await pipe.execute()
        except _IO_ERRORS as exc:
            self._pub_up = False
            self.publish_failures += len(batch)
            log.warning("redis pipeline of %d commands failed: %r", len(batch), exc)
            error = BackendUnavailable(f"Redis did not take the publish: {exc!r}")
            for _, accepted in batch:
                if accepted is not None and not accepted.done():
                    accepted.set_exception(error)
            return
        self._pub_up = True
        self.published += len(batch)
        for _, accepted in batch:
            if accepted is not None and not accepted.done():
                accepted.set_result(None)

    def _fail_queued(self, error: Exception) -> None:
        batch, self._pub_queue = self._pub_queue + self._in_flight, []
        self._in_flight = []
        for _, accepted in batch:
            if accepted is not None and not accepted.done():
                accepted.set_exception(error)

    # --- canary --------------------------------------------------------------

    async def _canary_loop(self) -> None:
        assert self._pub_client is not None
        while True:
            await asyncio.sleep(self._canary_interval)
            now = time.monotonic()
            if self._sub_up and now - self._last_canary > self._canary_timeout:
                self.canary_misses += 1
                log.warning(
                    "no canary back for %.1fs: subscription is deaf; rebuilding it",
                    now - self._last_canary,
                )
                await self._rebuild_deaf_subscriber()
                continue
            self._canary_seq += 1
            self._canary_sent[self._canary_seq] = now
            # Unanswered canaries older than the timeout are misses; keep few.
            for seq in [s for s, t in self._canary_sent.items() if now - t > self._canary_timeout]:
                del self._canary_sent[seq]
            # The canary also probes the publisher connection, so a node whose
            # last say failed becomes healthy again without another say.
            try:
                await self._pub_client.publish(self._node_channel, str(self._canary_seq))
            except _IO_ERRORS:
                self._pub_up = False
            else:
                self._pub_up = True

    async def _rebuild_deaf_subscriber(self) -> None:
        # Closing the subscriber makes the reader's get_message fail, and the
        # reader rebuilds it (one owner of reconnects).
        pubsub = self._pubsub
        if pubsub is not None:
            with contextlib.suppress(*_IO_ERRORS):
                await _aclose(pubsub)
        self._last_canary = time.monotonic()

    def _canary_back(self, data: bytes) -> None:
        sent = self._canary_sent.pop(int(data), None)
        now = time.monotonic()
        self._last_canary = now
        if sent is not None:
            self.canary_lag = now - sent

    # --- crash recovery ------------------------------------------------------

    def track(self, membership: Membership, member: bool) -> None:
        """Record a membership's start or end in this node's hash, in order
        with its announcements."""
        if self._presence is None:
            return
        field = f"{membership.room}\n{membership.session}".encode()
        key = self._members_prefix + self._node
        if member:
            user = (membership.user or "").encode()
            self._members[field] = user
            self._enqueue((b"HSET", key, field, user), None)
        elif self._members.pop(field, None) is not None:
            self._enqueue((b"HDEL", key, field), None)

    async def _recover_previous_incarnation(self) -> None:
        # A node restarted under the same id after a crash: its old sessions
        # are gone, whoever else has not reaped them yet.
        assert self._pub_client is not None and self._presence is not None
        key = self._members_prefix + self._node
        records = await self._pub_client.hgetall(key)
        if records:
            await self._pub_client.delete(key)
            log.warning("announcing left for %d members of this node's last run", len(records))
            self._presence.lost(_memberships(records))

    async def _presence_loop(self) -> None:
        period = max(0.5, self._presence_ttl / 5)
        while True:
            try:
                await self._heartbeat()
                await self._reap()
            except _IO_ERRORS as exc:
                log.debug("presence round skipped: %r", exc)
            await asyncio.sleep(period)

    async def _heartbeat(self) -> None:
        assert self._pub_client is not None and self._presence is not None
        pipe = self._pub_client.pipeline(transaction=False)
        pipe.set(self._alive_prefix + self._node, b"1", px=int(self._presence_ttl * 1000))
        pipe.sadd(self._nodes_key, self._node)
        _, added = await pipe.execute()
        if added and self._registered and self._members:
            # We had been taken for dead and our members announced as gone.
            log.warning(
                "this node was taken for dead; re-announcing %d members", len(self._members)
            )
            mapping: dict[Any, Any] = dict(self._members)
            await self._pub_client.hset(self._members_prefix + self._node, mapping=mapping)
            self._presence.revived(_memberships(self._members))
        self._registered = True

    async def _reap(self) -> None:
        assert self._pub_client is not None and self._presence is not None
        members = await self._pub_client.smembers(self._nodes_key)
        nodes = [_bytes(n) for n in members if _bytes(n) != self._node]
        if not nodes:
            return
        pipe = self._pub_client.pipeline(transaction=False)
        for node in nodes:
            pipe.exists(self._alive_prefix + node)
        alive = await pipe.execute()
        for node, is_alive in zip(nodes, alive, strict=True):
            if is_alive:
                continue
            won = await self._pub_client.set(
                self._reaped_prefix + node, self._node, nx=True, px=30_000
            )
            if not won:
                continue
            records = await self._pub_client.hgetall(self._members_prefix + node)
            log.warning(
                "node %s is gone; announcing left for its %d members", node.decode(), len(records)
            )
            self._presence.lost(_memberships(records))
            pipe = self._pub_client.pipeline(transaction=False)
            pipe.delete(self._members_prefix + node)
            pipe.srem(self._nodes_key, node)
            await pipe.execute()
            self.reaped_nodes += 1

    # --- health --------------------------------------------------------------

    def healthy(self) -> bool:
        """Reachable: subscriber up, canary recent, and the last publish worked."""
        fresh = time.monotonic() - self._last_canary <= self._canary_timeout
        return self._sub_up and self._pub_up and fresh

    def stats(self) -> dict[str, Any]:
        """Counters for metrics and tests."""
        return {
            "backend": "redis",
            "published": self.published,
            "received": self.received,
            "publish_failures": self.publish_failures,
            "reconnects": self.reconnects,
            "canary_misses": self.canary_misses,
            "canary_lag_seconds": self.canary_lag,
            "subscribed_rooms": len(self._rooms),
            "reaped_nodes": self.reaped_nodes,
        }


def _bytes(value: bytes | str) -> bytes:
    # redis-py types replies as bytes or str; ours are bytes (no decoding).
    return value if isinstance(value, bytes) else value.encode()


def _memberships(records: Mapping[Any, Any]) -> list[Membership]:
    memberships = []
    for field, user in records.items():
        room, _, session = _bytes(field).decode().partition("\n")
        memberships.append(Membership(room, session, _bytes(user).decode() or None))
    return memberships


async def _aclose(pubsub: PubSub) -> None:
    # redis-py leaves PubSub.aclose untyped.
    await pubsub.aclose()  # type: ignore[no-untyped-call]
