"""The Redis backend: subscriptions, the batched reader, the canary, health,
and the composition of the publisher and crash recovery.

One Redis channel per room, ``{namespace}:room:{room}``, subscribed while this
node has a local member of the room. A payload crosses Redis as
``{node}\\n{exclude}\\n{published_at}\\n{json}``: the JSON was encoded once by
the node where it was said, and receiving nodes forward it without decoding it.

Connections: one subscriber connection (a redis-py ``PubSub`` that this module
owns, reads in batches and rebuilds after any failure) and one publisher
connection (:mod:`broker.backends.redis.publisher`).

Liveness ("no deaf nodes"): every ``canary_interval`` the node publishes a
canary on its own channel ``{namespace}:node:{node}`` and expects it back
through its own subscription. When none has come back for
``canary_timeout``, the node reports itself unhealthy and rebuilds its
subscriber connection.

Invariants:
    * ``_rooms`` is the set of rooms the node wants; after a reconnect the
      subscriber re-subscribes exactly those.
    * Every acceptance future is settled when :meth:`RedisBackend.close`
      returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from broker.backends.base import (
    BackendUnavailable,
    DeliverBatch,
    Delivery,
    Membership,
    PresenceHooks,
)
from broker.backends.redis.client import IO_ERRORS, ClientFactory, aclose_pubsub
from broker.backends.redis.presence import Presence
from broker.backends.redis.publisher import Publisher

__all__ = ["RedisBackend"]

log = logging.getLogger("broker.redis")

CLOSE_FLUSH_TIMEOUT = 2.0


class RedisBackend:
    """A :class:`~broker.backends.base.Backend` over Redis pub/sub.

    Args:
        connect: makes a new client (see
            :func:`~broker.backends.redis.client.redis_client_factory`).
        node: this node's id (no whitespace).
        namespace: prefix of every channel and key name.
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
        self._namespace = namespace
        self._room_prefix = f"{namespace}:room:".encode()
        self._node_channel = f"{namespace}:node:{node}".encode()
        self._canary_interval = canary_interval
        self._canary_timeout = canary_timeout
        self._subscribe_timeout = subscribe_timeout
        self._presence_ttl = presence_ttl

        self._deliver: DeliverBatch | None = None
        self._rooms: set[str] = set()
        self._pending_subs: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._sub_client: aioredis.Redis | None = None
        self._pubsub: PubSub | None = None
        self._sub_lock = asyncio.Lock()
        self._sub_up = False
        self._publisher: Publisher | None = None
        self._presence: Presence | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._canary_seq = 0
        # Canaries not back yet: when sent (for the lag), and when Redis took
        # them (for deafness: only a canary Redis took can be missing).
        self._canary_sent: dict[int, float] = {}
        self._canary_taken: dict[int, float] = {}
        self._last_canary = 0.0

        self.received = 0
        self.reconnects = 0
        self.canary_misses = 0
        self.canary_lag = 0.0

    # --- lifecycle -----------------------------------------------------------

    async def start(self, deliver: DeliverBatch, presence: PresenceHooks | None = None) -> None:
        """Connect both connections and start the reader, publisher, canary and,
        with ``presence``, crash recovery.

        Raises:
            BackendUnavailable: Redis could not be reached.
        """
        self._deliver = deliver
        client = self._connect()
        self._publisher = publisher = Publisher(client)
        if presence is not None:
            self._presence = Presence(
                client, publisher, self._node, self._namespace, self._presence_ttl, presence
            )
        try:
            await client.ping()
            await self._open_subscriber()
            if self._presence is not None:
                await self._presence.recover_previous_run()
        except IO_ERRORS as exc:
            await client.aclose()
            raise BackendUnavailable(f"cannot reach Redis: {exc}") from exc
        self._last_canary = time.monotonic()
        self._spawn(self._read_loop(), "redis-reader")
        self._spawn(publisher.run(), "redis-publisher")
        self._spawn(self._canary_loop(), "redis-canary")
        if self._presence is not None:
            self._spawn(self._presence.run(), "redis-presence")

    async def close(self) -> None:
        """Let queued publishes go out (for up to ``CLOSE_FLUSH_TIMEOUT``), then
        stop every task and close both connections; every publish future is
        settled when this returns."""
        self._closing = True
        publisher = self._publisher
        if publisher is not None:
            # Cancelling the publisher mid-pipeline could leave its batch
            # unsettled (redis-py may swallow the cancellation): let it finish.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(publisher.idle(), CLOSE_FLUSH_TIMEOUT)
        for task in tuple(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=CLOSE_FLUSH_TIMEOUT)
        await self._close_subscriber()
        if publisher is not None:
            publisher.fail_all(BackendUnavailable("backend closed"))
            if self._presence is not None:
                await self._presence.withdraw()
            await publisher.client.aclose()

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
            async with self._sub_lock:
                # Read under the lock: the reader may have dropped the
                # subscriber while we waited for it. Then the rebuilt one
                # subscribes every room in _rooms, and its confirmation
                # resolves this future.
                pubsub = self._pubsub
                if self._sub_up and pubsub is not None:
                    await pubsub.subscribe(channel)
            await asyncio.wait_for(asyncio.shield(confirmed), self._subscribe_timeout)
        except IO_ERRORS as exc:
            self._forget_pending(channel, confirmed)
            raise BackendUnavailable(f"cannot subscribe to {room!r}: {exc!r}") from exc
        except BaseException:
            self._forget_pending(channel, confirmed)
            raise

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
        except IO_ERRORS as exc:
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
            await aclose_pubsub(pubsub)
            await client.aclose()
            raise
        self._sub_client, self._pubsub = client, pubsub
        self._sub_up = True

    async def _close_subscriber(self) -> None:
        self._sub_up = False
        pubsub, client = self._pubsub, self._sub_client
        self._pubsub = self._sub_client = None
        with contextlib.suppress(*IO_ERRORS):
            if pubsub is not None:
                await aclose_pubsub(pubsub)
            if client is not None:
                await client.aclose()

    async def _reconnect_subscriber(self) -> None:
        await self._close_subscriber()
        delay = 0.1
        while not self._closing:
            try:
                await self._open_subscriber()
            except IO_ERRORS as exc:
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
                    try:
                        self._handle(message, batch)
                    except ValueError:
                        # Not ours (another program on our channels): skip it,
                        # without taking the connection for broken.
                        log.warning("malformed message on %r skipped", message.get("channel"))
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
                try:
                    self._deliver(batch)
                except Exception:
                    # This task owns reconnects: it must outlive a fan-out bug.
                    log.exception("delivering a batch of %d failed", len(batch))

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
        assert self._publisher is not None, "RedisBackend.start() was not awaited"
        accepted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        data = b"\n".join((self._node, exclude.encode(), repr(published_at).encode(), payload))
        self._publisher.enqueue((b"PUBLISH", self._room_prefix + room.encode(), data), accepted)
        return accepted

    def track(self, membership: Membership, member: bool) -> None:
        """Record a membership for crash recovery (when started with presence)."""
        if self._presence is not None:
            self._presence.track(membership, member)

    # --- canary --------------------------------------------------------------

    async def _canary_loop(self) -> None:
        publisher = self._publisher
        assert publisher is not None
        while True:
            await asyncio.sleep(self._canary_interval)
            now = time.monotonic()
            # Deaf: Redis took a canary that has not come back. A canary that
            # Redis did not take (it is down or stalled) says nothing about
            # the subscription, and rebuilding it then would lose messages.
            timeout = self._canary_timeout
            if self._sub_up and any(now - t > timeout for t in self._canary_taken.values()):
                self.canary_misses += 1
                log.warning("a canary did not come back: subscription is deaf; rebuilding it")
                await self._rebuild_deaf_subscriber()
                continue
            self._canary_seq += 1
            seq = self._canary_seq
            self._canary_sent[seq] = now
            # The canary also probes the publisher connection, so a node whose
            # last say failed becomes healthy again without another say.
            try:
                await publisher.client.publish(self._node_channel, str(seq))
            except IO_ERRORS:
                publisher.up = False
                self._canary_sent.pop(seq, None)
            else:
                publisher.up = True
                if seq in self._canary_sent:  # not back yet
                    self._canary_taken[seq] = time.monotonic()

    async def _rebuild_deaf_subscriber(self) -> None:
        # Closing the subscriber makes the reader's get_message fail, and the
        # reader rebuilds it (one owner of reconnects).
        self._canary_sent.clear()
        self._canary_taken.clear()
        pubsub = self._pubsub
        if pubsub is not None:
            with contextlib.suppress(*IO_ERRORS):
                await aclose_pubsub(pubsub)
        self._last_canary = time.monotonic()

    def _canary_back(self, data: bytes) -> None:
        seq = int(data)
        self._canary_taken.pop(seq, None)
        sent = self._canary_sent.pop(seq, None)
        now = time.monotonic()
        self._last_canary = now
        if sent is not None:
            self.canary_lag = now - sent

    # --- health --------------------------------------------------------------

    def healthy(self) -> bool:
        """Reachable: subscriber up, canary recent, and the last publish worked."""
        fresh = time.monotonic() - self._last_canary <= self._canary_timeout
        publisher_up = self._publisher is not None and self._publisher.up
        return self._sub_up and publisher_up and fresh

    def stats(self) -> dict[str, Any]:
        """Counters for metrics and tests."""
        publisher, presence = self._publisher, self._presence
        return {
            "backend": "redis",
            "published": publisher.sent if publisher is not None else 0,
            "received": self.received,
            "publish_failures": publisher.failures if publisher is not None else 0,
            "reconnects": self.reconnects,
            "canary_misses": self.canary_misses,
            "canary_lag_seconds": self.canary_lag,
            "subscribed_rooms": len(self._rooms),
            "reaped_nodes": presence.reaped_nodes if presence is not None else 0,
        }
