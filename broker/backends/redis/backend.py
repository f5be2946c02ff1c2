"""The Redis backend: the :class:`~broker.backends.base.Backend` protocol
assembled from its parts.

One sharded Redis channel per room, ``{namespace:room}:c``, subscribed while
this node has a local member of the room; payloads in the format of
:mod:`.envelope`. A ``message`` goes through the publish script
(:mod:`.scripts`, :mod:`.history`), which gives it the room's next position,
keeps it in the room's history and publishes it in one atomic step;
announcements, and every publish without history, are a plain SPUBLISH. Two
connections: the subscriber's (:mod:`.subscriber`) and the publisher's
(:mod:`.publisher`), which the canary (:mod:`.canary`), history reads,
crash recovery (:mod:`.presence`) and rooms' presence
(:mod:`.room_presence`) also use.

Invariants:
    * Every task started by :meth:`RedisBackend.start` is owned here and
      awaited by :meth:`RedisBackend.close`.
    * Every acceptance future is settled when :meth:`RedisBackend.close`
      returns.
    * :meth:`RedisBackend.healthy` is true only while a canary this node
      published came back through its own subscription recently: ready means
      it was proved that this node may publish and hears what it publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from broker.backends.base import (
    BackendUnavailable,
    DeliverBatch,
    HistoryRead,
    Membership,
    Position,
    PresenceHooks,
    PresenceRead,
)
from broker.backends.redis.canary import Canary
from broker.backends.redis.client import IO_ERRORS, ClientFactory
from broker.backends.redis.envelope import RoomKeys, node_channel, pack, pack_head
from broker.backends.redis.errors import explain
from broker.backends.redis.history import History
from broker.backends.redis.presence import Presence
from broker.backends.redis.publisher import Publisher
from broker.backends.redis.room_presence import RoomPresence
from broker.backends.redis.subscriber import Subscriber

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
        canary_timeout: seconds without a canary before the node is deaf; also
            how long :meth:`start` waits for the first one.
        subscribe_timeout: seconds a subscription may take.
        presence_ttl: seconds without a heartbeat before other nodes take
            this one for dead and announce its members' ``left``; also how
            long a room's presence lives once no node refreshes it.
        history_size: messages kept per room (0: no history, no positions).
        history_ttl: seconds a room's messages are kept after its last one.
        history_meta_ttl: seconds a room's position is kept after its last
            message (at least ``history_ttl``).
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
        history_size: int = 0,
        history_ttl: float = 600.0,
        history_meta_ttl: float = 86_400.0,
    ) -> None:
        self._connect = connect
        self._node = node.encode()
        self._namespace = namespace
        self._history_size = history_size
        self._history_ttl = history_ttl
        self._history_meta_ttl = history_meta_ttl
        self._history: History | None = None
        self._canary_interval = canary_interval
        self._canary_timeout = canary_timeout
        self._subscribe_timeout = subscribe_timeout
        self._presence_ttl = presence_ttl
        self._publisher: Publisher | None = None
        self._subscriber: Subscriber | None = None
        self._canary: Canary | None = None
        self._presence: Presence | None = None
        self._rooms: RoomPresence | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle -----------------------------------------------------------

    async def start(self, deliver: DeliverBatch, presence: PresenceHooks | None = None) -> None:
        """Connect both connections; start the reader, publisher, canary and
        the heartbeat (which keeps rooms' presence, and, with ``presence``,
        watches for dead nodes); then wait (up to the canary
        timeout) for the first canary, so that a node that can work is
        healthy when this returns. One that cannot stays unhealthy and logs why.

        Raises:
            BackendUnavailable: Redis could not be reached, or refused the
                credentials or a command (the message says which, in one line).
        """
        client = self._connect()
        self._publisher = publisher = Publisher(client)
        self._history = history = History(
            client,
            self._namespace,
            self._history_size,
            self._history_ttl,
            self._history_meta_ttl,
        )
        self._canary = canary = Canary(
            publisher,
            node_channel(self._namespace, self._node),
            self._canary_interval,
            self._canary_timeout,
        )
        self._subscriber = subscriber = Subscriber(
            self._connect,
            self._node,
            self._namespace,
            deliver,
            canary.back,
            canary.restart,
            self._subscribe_timeout,
            presence.resubscribed if presence is not None else _nothing,
        )
        # Without hooks, presence still lives and expires with this node's
        # heartbeat (Backend.track); nobody is reaped or told.
        self._rooms = rooms = RoomPresence(
            client, publisher, self._node, self._namespace, self._presence_ttl
        )
        self._presence = Presence(
            client, publisher, self._node, self._namespace, self._presence_ttl, presence, rooms
        )
        try:
            await client.ping()
            if self._history_size > 0:
                await history.load()
            await subscriber.start()
            await self._presence.recover_previous_run()
        except IO_ERRORS as exc:
            await subscriber.close()
            await client.aclose()
            raise BackendUnavailable(explain(exc, client)) from exc
        self._spawn(publisher.run(), "redis-publisher")
        self._spawn(canary.run(subscriber), "redis-canary")
        self._spawn(self._presence.run(), "redis-presence-" + self._node.decode())
        try:
            async with asyncio.timeout(self._canary_timeout):
                await canary.wait_heard()
        except TimeoutError:
            log.warning(
                "no canary came back within %.1fs of starting: this node is not ready",
                self._canary_timeout,
            )

    async def close(self) -> None:
        """Let queued publishes go out (for up to ``CLOSE_FLUSH_TIMEOUT``), then
        stop every task and close both connections; every publish future is
        settled when this returns."""
        publisher, subscriber = self._publisher, self._subscriber
        if publisher is not None:
            # Cancelling the publisher mid-pipeline could leave its batch
            # unsettled (redis-py may swallow the cancellation): let it finish.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(publisher.idle(), CLOSE_FLUSH_TIMEOUT)
        for task in tuple(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=CLOSE_FLUSH_TIMEOUT)
        if subscriber is not None:
            await subscriber.close()
        if publisher is not None:
            publisher.fail_all(BackendUnavailable("backend closed"))
            if self._presence is not None:
                await self._presence.withdraw()
            await publisher.client.aclose()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the Backend protocol ------------------------------------------------

    async def subscribe(self, room: str) -> None:
        """Subscribe to ``room``'s channel; returns once Redis confirmed it.

        Raises:
            BackendUnavailable: not confirmed within the subscribe timeout.
        """
        assert self._subscriber is not None, "RedisBackend.start() was not awaited"
        await self._subscriber.subscribe(room)

    def unsubscribe(self, room: str) -> None:
        """Unsubscribe from ``room``'s channel, after commands already sent."""
        assert self._subscriber is not None, "RedisBackend.start() was not awaited"
        self._subscriber.unsubscribe(room)

    @property
    def history_size(self) -> int:
        """Messages kept per room (0: no history and no positions)."""
        return self._history_size

    def publish(
        self,
        room: str,
        exclude: str,
        payload: bytes,
        published_at: float = 0.0,
        *,
        history: bool = True,
    ) -> asyncio.Future[Position | None]:
        """Queue a publish; the returned future resolves when Redis accepted
        it, to the position the message got (None without history).

        With history, the publish script assigns the position, keeps the
        frame and publishes it atomically (docs/HISTORY-PRESENCE.md,
        "Positions"); otherwise a plain SPUBLISH.
        """
        assert self._publisher is not None, "RedisBackend.start() was not awaited"
        assert self._history is not None
        accepted: asyncio.Future[Position | None] = asyncio.get_running_loop().create_future()
        keys = RoomKeys.of(self._namespace, room)
        if history and self._history_size > 0:
            head = pack_head(self._node, exclude, published_at)
            args, position = self._history.publish(keys, head, payload)
            self._publisher.enqueue(args, accepted, position, self._history.publish_script)
        else:
            data = pack(self._node, exclude, published_at, payload)
            self._publisher.enqueue((b"SPUBLISH", keys.channel, data), accepted)
        return accepted

    async def read_history(
        self, room: str, after: int = 0, before: int | None = None, limit: int | None = None
    ) -> HistoryRead:
        """The room's position and kept messages, in one atomic look (a
        script); a room without a position gets one.

        Raises:
            BackendUnavailable: Redis could not be reached.
        """
        assert self._history is not None, "RedisBackend.start() was not awaited"
        return await self._history.read(room, after, before, limit)

    async def rotate_epoch(self, room: str, stale_epoch: str) -> None:
        """Drop the room's history and position if it is still in ``stale_epoch``.

        Raises:
            BackendUnavailable: Redis could not be reached.
        """
        assert self._history is not None, "RedisBackend.start() was not awaited"
        await self._history.rotate(room, stale_epoch)

    def track(self, membership: Membership, member: bool) -> None:
        """Record a membership in its room's presence and for crash recovery,
        through the publisher pipeline: written before any later publish."""
        assert self._presence is not None, "RedisBackend.start() was not awaited"
        self._presence.track(membership, member)

    async def presence(self, room: str, limit: int) -> PresenceRead:
        """Who is in ``room`` on every node, in one atomic look (a script):
        the counts are two HLENs, the list at most ``limit`` sessions.

        Raises:
            BackendUnavailable: Redis could not be reached.
        """
        assert self._rooms is not None, "RedisBackend.start() was not awaited"
        return await self._rooms.read(room, limit)

    def healthy(self) -> bool:
        """Ready: subscribed, the last publish worked, and a canary came back
        through the current subscription within the canary timeout."""
        subscriber, publisher, canary = self._subscriber, self._publisher, self._canary
        if subscriber is None or publisher is None or canary is None:
            return False
        return subscriber.up and publisher.up and canary.fresh()

    def stats(self) -> dict[str, Any]:
        """Counters for metrics and tests."""
        publisher, subscriber = self._publisher, self._subscriber
        canary, presence = self._canary, self._presence
        return {
            "backend": "redis",
            "published": publisher.sent if publisher is not None else 0,
            "received": subscriber.received if subscriber is not None else 0,
            "publish_failures": publisher.failures if publisher is not None else 0,
            "reconnects": subscriber.reconnects if subscriber is not None else 0,
            "canary_misses": canary.misses if canary is not None else 0,
            "canary_lag_seconds": canary.lag if canary is not None else 0.0,
            "subscribed_rooms": len(subscriber.rooms) if subscriber is not None else 0,
            "reaped_nodes": presence.reaped_nodes if presence is not None else 0,
            "presence_rewritten_rooms": (
                self._rooms.rewritten_rooms if self._rooms is not None else 0
            ),
        }


def _nothing() -> None:
    """No node hooks: nobody to tell of a re-subscription."""
