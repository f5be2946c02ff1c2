"""The subscriber connection: room subscriptions (sharded pub/sub:
SSUBSCRIBE), the batched reader, and the rebuild after any failure.

Invariants:
    * ``rooms`` is the set of rooms the node wants; every connection this
      module opens subscribes exactly those, plus the node's own channel,
      last: its confirmation proves every room before it subscribed.
    * After an interruption (a reconnect, or a rebuild the canary asked for),
      ``resubscribed`` is called exactly once per new connection, when Redis
      confirmed the node channel's subscription: from then on every publish
      reaches this node, so what the node then reads from history joins the
      live traffic without a gap (docs/HISTORY-PRESENCE.md, "No lost
      messages inside the cluster").
    * Every publish on a room channel is delivered, this node's own too
      (the Backend contract: members get what comes back, in the store's
      order).
    * The subscriber owns its tasks (the reader, unsubscribes); the reader
      is the one that reconnects after a failure, and :meth:`Subscriber.rebuild`
      (the canary's request) stops it before replacing the connection.
    * A pub/sub dict never leaves this module: it becomes a typed
      :class:`~broker.backends.base.Delivery` (or a canary) as it is read.
    * Every subscription waiter is settled: confirmed by Redis, or failed by
      its own timeout in :meth:`Subscriber.subscribe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from broker.backends.base import BackendUnavailable, DeliverBatch, Delivery
from broker.backends.redis.client import IO_ERRORS, ClientFactory, aclose_pubsub
from broker.backends.redis.cluster_topology import slot_of
from broker.backends.redis.confirmations import Confirmations
from broker.backends.redis.envelope import RoomKeys, node_channel, room_of, unpack
from broker.backends.redis.errors import brief, subscription_lost

__all__ = ["Subscriber"]

log = logging.getLogger("broker.redis")

FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
SUBSCRIBE_CHUNK = 1000
"""Channels per SSUBSCRIBE when a connection subscribes every room again."""


class Subscriber:
    """One node's subscriptions on one Redis connection, rebuilt as needed.

    Args:
        connect: makes a new client.
        node: this node's id (names its canary channel).
        namespace: prefix of every channel name.
        deliver: receives what arrived together, never awaiting.
        canary_back: receives the data of each message on the node channel.
        opened: called after every (re)subscription, before reading from it.
        subscribe_timeout: seconds a subscription may take.
        resubscribed: called once a subscription that replaced an
            interrupted one is whole.
        disturbed: called when the connection fails, or Redis ends a
            subscription on its own (a cluster moved the channel's slot):
            a cluster backend then looks at the topology again.
        cluster: the connection is to a master of a Redis Cluster, which
            refuses an SSUBSCRIBE naming channels of several slots.
    """

    def __init__(
        self,
        connect: ClientFactory,
        node: bytes,
        namespace: str,
        deliver: DeliverBatch,
        canary_back: Callable[[bytes], None],
        opened: Callable[[], None],
        subscribe_timeout: float = 5.0,
        resubscribed: Callable[[], None] = lambda: None,
        disturbed: Callable[[], None] = lambda: None,
        cluster: bool = False,
    ) -> None:
        self._connect = connect
        self._cluster = cluster
        self._disturbed = disturbed
        self._namespace = namespace
        self.node_channel = node_channel(namespace, node)
        self._resubscribed = resubscribed
        self._interrupted = False  # set until a replacement is confirmed whole
        self._whole_again = False  # confirmed whole: call resubscribed
        self._deliver = deliver
        self._canary_back = canary_back
        self._opened = opened
        self._subscribe_timeout = subscribe_timeout
        self.rooms: set[str] = set()
        self.kicked: set[str] = set()
        """Rooms whose subscription Redis ended on its own (a slot moved)."""
        self._unsubscribing: dict[bytes, int] = {}
        """SUNSUBSCRIBEs sent on this connection whose reply has not come:
        those replies are ours, not Redis ending a subscription."""
        self._confirmations = Confirmations()
        self._client: aioredis.Redis | None = None
        self._pubsub: PubSub | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()  # the reader and unsubscribes
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self._backoff = FIRST_BACKOFF
        self.up = False
        self.last_received = 0.0
        """When a message last arrived (monotonic seconds)."""
        self.received = 0
        self.reconnects = 0

    # --- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Connect, subscribe, and start the reader.

        Raises:
            RedisError, OSError, TimeoutError: Redis refused or is unreachable.
        """
        await self._open()
        self._reader = self._spawn(self._read_loop(), "redis-reader")

    def begin(self) -> None:
        """Start the reader, which connects and subscribes in the background
        (retrying with backoff); ``resubscribed`` is called once the
        subscription is whole, as after a reconnect."""
        self._interrupted = True
        self._reader = self._spawn(self._read_loop(), "redis-reader")

    async def close(self) -> None:
        """Stop for good: the reader, the unsubscribes and the connection."""
        self._closing = True
        for task in tuple(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        await self._drop()

    async def rebuild(self) -> None:
        """Replace the connection with a new one (a deaf subscription).

        The reader is stopped first: redis-py leaks the socket of a PubSub
        closed under a pending read.
        """
        reader = self._reader
        if reader is None or self._closing:
            return
        reader.cancel()
        await asyncio.wait([reader])
        self._interrupted = True
        await self._drop()
        if not self._closing:
            self._reader = self._spawn(self._read_loop(), "redis-reader")

    async def _open(self) -> None:
        client = self._connect()
        pubsub = client.pubsub()
        try:
            async with self._lock:
                # Written without waiting for replies, in as few commands as
                # Redis takes: a Redis Cluster refuses an SSUBSCRIBE that
                # names channels of several slots (CROSSSLOT).
                self._unsubscribing = {}
                for channels in self._groups([self._channel(room) for room in self.rooms]):
                    await pubsub.ssubscribe(*channels)
                await pubsub.ssubscribe(self.node_channel)
        except BaseException:
            await aclose_pubsub(pubsub)
            await client.aclose()
            raise
        self._client, self._pubsub = client, pubsub
        self.up = True
        self._opened()

    def _groups(self, channels: list[bytes]) -> list[list[bytes]]:
        if self._cluster:
            by_slot: dict[int, list[bytes]] = {}
            for channel in channels:
                by_slot.setdefault(slot_of(channel), []).append(channel)
            groups = list(by_slot.values())
        else:
            groups = [channels]
        return [
            group[start : start + SUBSCRIBE_CHUNK]
            for group in groups
            for start in range(0, len(group), SUBSCRIBE_CHUNK)
        ]

    async def _drop(self) -> None:
        # Detached under the lock, so that no subscribe or unsubscribe sends
        # on a PubSub being closed (redis-py would open a new connection for
        # it, which nobody closes).
        async with self._lock:
            self.up = False
            pubsub, client = self._pubsub, self._client
            self._pubsub = self._client = None
        with contextlib.suppress(*IO_ERRORS):
            if pubsub is not None:
                await aclose_pubsub(pubsub)
            if client is not None:
                await client.aclose()

    async def _reopen(self) -> None:
        self._interrupted = True
        await self._drop()
        while not self._closing:
            # Full jitter, so that many nodes do not reconnect in step. The
            # backoff is reset only by traffic on a connection, so a Redis
            # that accepts the connection and then refuses the subscription
            # (NOPERM) is not asked again in a tight loop.
            await asyncio.sleep(random.uniform(0, self._backoff))
            self._backoff = min(self._backoff * 2, MAX_BACKOFF)
            if self._closing:
                return
            try:
                await self._open()
            except IO_ERRORS as exc:
                log.warning("redis subscriber reconnect failed: %s; retrying", brief(exc))
                continue
            self.reconnects += 1
            log.info("redis subscriber reconnected; %d rooms re-subscribed", len(self.rooms))
            return

    # --- subscriptions -----------------------------------------------------------

    async def subscribe(self, room: str) -> None:
        """Subscribe to ``room``'s channel; returns once Redis confirmed it.

        Raises:
            BackendUnavailable: not confirmed within the subscribe timeout.
        """
        channel = self._channel(room)
        self.rooms.add(room)
        confirmed = self._confirmations.expect(channel)
        try:
            async with self._lock:
                # Read under the lock: the reader may have dropped the
                # connection while we waited for it. Then the rebuilt one
                # subscribes every room in ``rooms``, and its confirmation
                # resolves this future.
                pubsub = self._pubsub
                if self.up and pubsub is not None:
                    await pubsub.ssubscribe(channel)
            await asyncio.wait_for(asyncio.shield(confirmed), self._subscribe_timeout)
        except IO_ERRORS as exc:
            self._confirmations.forget(channel, confirmed)
            raise BackendUnavailable(f"cannot subscribe to {room!r}: {brief(exc)}") from exc
        except BaseException:
            self._confirmations.forget(channel, confirmed)
            raise

    def forget(self, room: str) -> None:
        """Stop wanting ``room`` without telling Redis (its slot moved away:
        Redis ended the subscription, or ends it, itself)."""
        self.rooms.discard(room)
        self.kicked.discard(room)

    def unsubscribe(self, room: str) -> None:
        """Unsubscribe from ``room``'s channel, after commands already sent."""
        self.rooms.discard(room)
        if self.up and self._pubsub is not None:
            self._spawn(self._unsubscribe(self._pubsub, room), "redis-unsubscribe")

    async def _unsubscribe(self, pubsub: PubSub, room: str) -> None:
        try:
            async with self._lock:
                if room not in self.rooms and pubsub is self._pubsub:
                    channel = self._channel(room)
                    self._unsubscribing[channel] = self._unsubscribing.get(channel, 0) + 1
                    await pubsub.sunsubscribe(channel)
        except IO_ERRORS as exc:
            # The reader notices the broken connection and the rebuilt
            # subscriber leaves this room out.
            log.debug("unsubscribe %s failed: %s", room, brief(exc))

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _own_unsubscribe(self, channel: bytes) -> bool:
        # The reply to a SUNSUBSCRIBE of ours: a room left and joined again
        # before it came is still wanted, and must not be taken for kicked.
        pending = self._unsubscribing.get(channel, 0)
        if not pending:
            return False
        if pending == 1:
            del self._unsubscribing[channel]
        else:
            self._unsubscribing[channel] = pending - 1
        return True

    def _room_wanted(self, channel: bytes) -> bool:
        room = room_of(self._namespace, channel)
        return channel == self.node_channel or (room is not None and room in self.rooms)

    def _channel(self, room: str) -> bytes:
        return RoomKeys.of(self._namespace, room).channel

    # --- reading -------------------------------------------------------------

    async def _read_loop(self) -> None:
        # Reads in batches, and opens a new connection after any failure.
        while not self._closing:
            pubsub = self._pubsub
            if pubsub is None:
                await self._reopen()
                continue
            batch: list[Delivery] = []
            failure: Exception | None = None
            try:
                await self._read_batch(pubsub, batch)
            except Exception as exc:
                failure = exc
            # What was read before a failure is delivered all the same.
            if batch:
                self.received += len(batch)
                try:
                    self._deliver(batch)
                except Exception:
                    # This task owns reconnects: it must outlive a fan-out bug.
                    log.exception("delivering a batch of %d failed", len(batch))
            if self._whole_again:
                self._whole_again = False
                try:
                    self._resubscribed()
                except Exception:
                    log.exception("the resubscribed hook failed")
            if failure is not None:
                if self._closing:
                    return
                log.warning("%s", subscription_lost(failure))
                self._disturbed()
                await self._reopen()

    async def _read_batch(self, pubsub: PubSub, batch: list[Delivery]) -> None:
        message = await pubsub.get_message(timeout=None)
        # The connection carries traffic: a late canary then means this node
        # is behind (busy), not deaf (canary.py).
        self.last_received = time.monotonic()
        # Drain what is already buffered, so the hub gets one batch.
        while message is not None:
            self._backoff = FIRST_BACKOFF  # the connection works
            try:
                self._handle(message, batch)
            except ValueError:
                # Not ours (another program on our channels): skip it,
                # without taking the connection for broken.
                log.warning("malformed message on %r skipped", message.get("channel"))
            message = await pubsub.get_message(timeout=0)

    def _handle(self, message: dict[str, Any], batch: list[Delivery]) -> None:
        kind = message["type"]
        channel: bytes = message["channel"]
        if kind == "smessage":
            if channel == self.node_channel:
                self._canary_back(message["data"])
                return
            room = room_of(self._namespace, channel)
            if room is None:
                raise ValueError("not a room channel")
            batch.append(Delivery(room, *unpack(message["data"])))
        elif kind == "sunsubscribe" and self._own_unsubscribe(channel):
            return
        elif kind == "sunsubscribe" and self._room_wanted(channel):
            # Redis ended it on its own: its slot moved (or was reassigned).
            # The cluster backend subscribes it again where it lives now.
            room = room_of(self._namespace, channel)
            if room is not None and channel != self.node_channel:
                self.rooms.discard(room)
                self.kicked.add(room)
            self._disturbed()
        elif kind == "ssubscribe":
            self._confirmations.confirm(channel)
            if channel == self.node_channel and self._interrupted:
                # Called once the batch read with it is delivered (_read_loop).
                self._interrupted = False
                self._whole_again = True
