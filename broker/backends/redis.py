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
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from broker.backends.base import BackendUnavailable, DeliverBatch, Delivery

__all__ = ["RedisBackend", "redis_client_factory"]

log = logging.getLogger("broker.redis")

_IO_ERRORS = (RedisError, OSError, asyncio.TimeoutError)

ClientFactory = Callable[[], aioredis.Redis]


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
    ) -> None:
        self._connect = connect
        self._node = node.encode()
        self._room_prefix = f"{namespace}:room:".encode()
        self._node_channel = f"{namespace}:node:{node}".encode()
        self._canary_interval = canary_interval
        self._canary_timeout = canary_timeout
        self._subscribe_timeout = subscribe_timeout

        self._deliver: DeliverBatch | None = None
        self._rooms: set[str] = set()
        self._pending_subs: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._sub_client: aioredis.Redis | None = None
        self._pubsub: PubSub | None = None
        self._sub_lock = asyncio.Lock()
        self._sub_up = False
        self._pub_client: aioredis.Redis | None = None
        self._pub_queue: list[tuple[bytes, bytes, asyncio.Future[None]]] = []
        self._pub_wakeup = asyncio.Event()
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

    # --- lifecycle -----------------------------------------------------------

    async def start(self, deliver: DeliverBatch) -> None:
        """Connect both connections and start the reader, publisher and canary.

        Raises:
            BackendUnavailable: Redis could not be reached.
        """
        self._deliver = deliver
        self._pub_client = self._connect()
        try:
            await self._pub_client.ping()
            await self._open_subscriber()
        except _IO_ERRORS as exc:
            await self._pub_client.aclose()
            raise BackendUnavailable(f"cannot reach Redis: {exc}") from exc
        self._last_canary = time.monotonic()
        self._spawn(self._read_loop(), "redis-reader")
        self._spawn(self._publish_loop(), "redis-publisher")
        self._spawn(self._canary_loop(), "redis-canary")

    async def close(self) -> None:
        """Stop every task and close both connections."""
        self._closing = True
        for task in tuple(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._fail_queued(BackendUnavailable("backend closed"))
        await self._close_subscriber()
        if self._pub_client is not None:
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
        self._pub_queue.append((self._room_prefix + room.encode(), data, accepted))
        self._pub_wakeup.set()
        return accepted

    async def _publish_loop(self) -> None:
        assert self._pub_client is not None
        while True:
            await self._pub_wakeup.wait()
            self._pub_wakeup.clear()
            batch, self._pub_queue = self._pub_queue, []
            if not batch:
                continue
            pipe = self._pub_client.pipeline(transaction=False)
            for channel, data, _ in batch:
                pipe.publish(channel, data)
            try:
                await pipe.execute()
            except _IO_ERRORS as exc:
                self._pub_up = False
                self.publish_failures += len(batch)
                log.warning("redis publish of %d messages failed: %r", len(batch), exc)
                error = BackendUnavailable(f"Redis did not take the publish: {exc!r}")
                for _, _, accepted in batch:
                    if not accepted.done():
                        accepted.set_exception(error)
                continue
            self._pub_up = True
            self.published += len(batch)
            for _, _, accepted in batch:
                if not accepted.done():
                    accepted.set_result(None)

    def _fail_queued(self, error: Exception) -> None:
        batch, self._pub_queue = self._pub_queue, []
        for _, _, accepted in batch:
            if not accepted.done():
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
        }


async def _aclose(pubsub: PubSub) -> None:
    # redis-py leaves PubSub.aclose untyped.
    await pubsub.aclose()  # type: ignore[no-untyped-call]
