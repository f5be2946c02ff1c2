"""The Redis backend on a Redis Cluster (``--redis-cluster``): the
:class:`~broker.backends.base.Backend` protocol over sharded pub/sub, one
:class:`~broker.backends.redis.cluster_shard.Shard` per master.

Rooms: a room's channel, history, position and presence keys share its hash
tag ``{ns:room}`` (:mod:`.envelope`), so they live in one slot, and the same
scripts as on one Redis run there unchanged. A room is subscribed on the
shard that owns its slot; the publish script runs on that shard, through
that shard's own pipeline (:mod:`.cluster_router` routes and redirects).

One reader per shard: each shard has its own subscriber connection, reader
task, publisher pipeline and canary, on a channel whose slot that shard
owns. A slow or dead shard stalls only its own rooms; ``/healthz`` stays 200
while any shard is healthy and lists each one's state.

Following the slots: the node looks at ``CLUSTER SLOTS`` every
``topology_interval`` and at once when something moved (a MOVED reply, a
subscription Redis ended because its slot migrated, a lost connection). A
room whose slot has a new master is subscribed there, dropped from the old
one, and the node is told ``resubscribed``: it reads what its rooms missed
from history (docs/HISTORY-PRESENCE.md, "No lost messages inside the
cluster").

Failover and epochs: replication is asynchronous, so a promoted replica may
lack the last messages its master acknowledged; their offsets would then be
given again, to other messages. When a slot's new master took over from one
that serves no slot any more (it died or was demoted: a failover, not a
migration, which moves the keys with the slot), each node, before it sends
anything to the new master (its router keeps the old topology until then),
rotates the epoch of each room on that slot it was subscribed to or
published to lately (a room said in through ``POST /publish``, or whose
members left: the epochs :class:`~.history.History` remembers),
conditionally on the epoch it saw or used there before the failover (so an
epoch another node started since is never dropped). Every acknowledged
message was published by some node, so every room whose acknowledged
messages the old master may have taken with it starts a new epoch: members
see a new epoch (``recovered: false``), never a reused offset. With
``wait_replicas`` > 0 every acknowledged message is on a replica, and no
epoch is rotated. Nodes also keep detecting offsets that went backwards on
every fill (:mod:`broker.node`).

Node heartbeats and registries (:mod:`.presence`) are ordinary keys of the
namespace, each in its own slot; a namespace keeps deployments apart on a
shared cluster as on one Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from broker.backends.base import (
    BackendUnavailable,
    DeliverBatch,
    Delivery,
    HistoryRead,
    Membership,
    Position,
    PresenceHooks,
    PresenceRead,
)
from broker.backends.redis.client import IO_ERRORS
from broker.backends.redis.cluster_client import ClusterSeeds, read_slots
from broker.backends.redis.cluster_router import Router
from broker.backends.redis.cluster_shard import Shard, ShardSettings
from broker.backends.redis.cluster_topology import Master, Topology, canary_node, slot_of
from broker.backends.redis.envelope import RoomKeys, node_channel, pack, pack_head
from broker.backends.redis.errors import brief, explain
from broker.backends.redis.history import History
from broker.backends.redis.presence import Presence
from broker.backends.redis.room_presence import RoomPresence

__all__ = ["RedisClusterBackend"]

log = logging.getLogger("broker.redis")

CLOSE_TIMEOUT = 2.0
ROTATIONS_IN_FLIGHT = 32
"""Epoch rotations sent at once after a failover."""
_END = 2**62  # an offset past any: a read of the position alone


class RedisClusterBackend:
    """A :class:`~broker.backends.base.Backend` over a Redis Cluster.

    Args:
        seeds: the cluster's seed nodes.
        node: this node's id (no whitespace).
        namespace: prefix of every channel and key name.
        canary_interval: seconds between canaries (per shard).
        canary_timeout: seconds without a canary before a shard is not ready.
        subscribe_timeout: seconds a subscription may take.
        presence_ttl: see :class:`~broker.backends.redis.RedisBackend`.
        history_size: messages kept per room (0: no history, no positions).
        history_ttl: seconds a room's messages are kept after its last one.
        history_meta_ttl: seconds a room's position is kept.
        wait_replicas: replicas each publish waits for (``WAIT``; 0: none).
        wait_timeout: seconds that wait may take.
        topology_interval: seconds between looks at ``CLUSTER SLOTS``.
        retry_window: seconds a redirected publish may be sent again.
    """

    def __init__(
        self,
        seeds: ClusterSeeds,
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
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        topology_interval: float = 1.0,
        retry_window: float = 3.0,
    ) -> None:
        self._seeds = seeds
        self._node = node.encode()
        self._namespace = namespace
        self._history_size = history_size
        self._history_ttl = history_ttl
        self._history_meta_ttl = history_meta_ttl
        self._canary_interval = canary_interval
        self._canary_timeout = canary_timeout
        self._subscribe_timeout = subscribe_timeout
        self._presence_ttl = presence_ttl
        self._wait_replicas = wait_replicas
        self._wait_timeout = wait_timeout
        self._topology_interval = topology_interval
        self._router = Router(self._owner_of_slot, self._shards_at, self._stale, retry_window)
        self._shards: dict[str, Shard] = {}
        self._rooms: dict[str, Shard] = {}
        self._topology: Topology | None = None
        self._changed = asyncio.Event()
        self._hooks: PresenceHooks | None = None
        self._client: RedisCluster | None = None
        self._history: History | None = None
        self._presence: Presence | None = None
        self._room_presence: RoomPresence | None = None
        self._settings: ShardSettings | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._retired: list[Shard] = []
        self._epochs: dict[str, str] = {}
        """The last epoch seen of each subscribed room (deliveries, reads)."""
        self.failovers = 0
        self.migrations = 0
        self.rotated_rooms = 0

    # --- lifecycle -------------------------------------------------------------

    async def start(self, deliver: DeliverBatch, presence: PresenceHooks | None = None) -> None:
        """Read the topology, connect to every master, start each shard's
        reader, pipeline and canary, the heartbeat and the topology watch;
        then wait (up to the canary timeout) for every shard's first canary.

        Raises:
            BackendUnavailable: no seed answered, a seed is not a cluster
                node, some slots have no master, or Redis refused the node
                (one line that says which).
        """
        self._hooks = presence
        topology = await self._seeds.topology(complete=True)
        self._topology = topology
        self._client = client = self._seeds.cluster_client()
        # History, presence and heartbeats take the cluster client where they
        # take a client: the same calls (EVALSHA by key, SCRIPT LOAD on every
        # master, pipelines split by slot).
        commands = cast(aioredis.Redis, client)
        self._history = history = History(
            commands,
            self._namespace,
            self._history_size,
            self._history_ttl,
            self._history_meta_ttl,
        )
        self._room_presence = rooms = RoomPresence(
            commands, self._router, self._node, self._namespace, self._presence_ttl
        )
        self._presence = Presence(
            commands,
            self._router,
            self._node,
            self._namespace,
            self._presence_ttl,
            presence,
            rooms,
        )
        epochs = self._epochs

        def delivered(batch: Sequence[Delivery]) -> None:
            for delivery in batch:
                if delivery.offset:
                    epochs[delivery.room] = delivery.epoch
            deliver(batch)

        self._settings = ShardSettings(
            self._namespace,
            delivered,
            presence.resubscribed if presence is not None else _nothing,
            self._stale,
            self._router.reroute,
            canary_interval=self._canary_interval,
            canary_timeout=self._canary_timeout,
            subscribe_timeout=self._subscribe_timeout,
            wait_replicas=self._wait_replicas,
            wait_timeout_ms=max(1, int(self._wait_timeout * 1000)),
        )
        shards = [self._new_shard(master, topology) for master in topology.masters()]
        self._shards = {shard.address: shard for shard in shards}
        try:
            await client.initialize()
            outcomes = await asyncio.gather(
                *(shard.start() for shard in shards), return_exceptions=True
            )
            failed = [
                (shard, exc) for shard, exc in zip(shards, outcomes, strict=True) if exc is not None
            ]
            for _, exc in failed:
                if isinstance(exc, BaseException) and not isinstance(exc, Exception):
                    raise exc
            if len(failed) == len(shards):
                first, exc = failed[0]
                reason = explain(exc, first.publisher.client)
                raise BackendUnavailable(reason) from exc
            for shard, exc in failed:
                log.warning("redis shard %s unreachable at start: %s", shard.address, exc)
                shard.begin()
            if self._history_size > 0:
                await history.load()
            await self._presence.recover_previous_run()
        except (*IO_ERRORS, RedisClusterException, BackendUnavailable) as exc:
            await self._close_shards()
            with contextlib.suppress(*IO_ERRORS):
                await client.aclose()
            if isinstance(exc, BackendUnavailable):
                raise
            raise BackendUnavailable(f"Redis Cluster refused the node: {brief(exc)}") from exc
        self._spawn(self._presence.run(), "redis-presence-" + self._node.decode())
        self._spawn(self._watch(), "redis-cluster-topology")
        try:
            async with asyncio.timeout(self._canary_timeout):
                await asyncio.gather(*(shard.wait_heard() for shard in shards))
        except TimeoutError:
            log.warning(
                "not every shard's canary came back within %.1fs of starting: "
                "those shards' rooms are not ready",
                self._canary_timeout,
            )

    async def close(self) -> None:
        """Stop every task and shard; every publish future is settled."""
        for task in tuple(self._tasks):
            task.cancel()
        if self._tasks:
            # redis-py's cluster client may swallow a cancellation (as on one
            # Redis, backend.py): wait a bounded time.
            await asyncio.wait(self._tasks, timeout=CLOSE_TIMEOUT)
        await self._close_shards()
        await self._router.close()
        if self._presence is not None:
            await self._presence.withdraw()
        if self._client is not None:
            with contextlib.suppress(*IO_ERRORS):
                await self._client.aclose()

    async def _close_shards(self) -> None:
        shards = [*self._shards.values(), *self._retired]
        self._shards, self._retired = {}, []
        await asyncio.gather(
            *(shard.close(BackendUnavailable("backend closed")) for shard in shards)
        )

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- shards and topology ---------------------------------------------------

    def _new_shard(self, master: Master, topology: Topology) -> Shard:
        assert self._settings is not None
        canary = canary_node(self._namespace, self._node, topology.slots_of(master))
        return Shard(master, self._seeds.factory(master), canary, self._settings)

    def _owner_of_slot(self, slot: int) -> Shard | None:
        topology = self._topology
        master = topology.owner(slot) if topology is not None else None
        return self._shards.get(master.address) if master is not None else None

    def _shards_at(self, address: str) -> Shard | None:
        return self._shards.get(address)

    def _owner_of_room(self, room: str) -> Shard | None:
        return self._owner_of_slot(slot_of(RoomKeys.of(self._namespace, room).channel))

    def _stale(self) -> None:
        self._changed.set()

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self._topology_interval)
            self._changed.clear()
            try:
                topology = await self._fetch()
            except BackendUnavailable as exc:
                log.debug("cluster topology not read: %s", exc)
                continue
            try:
                if topology != self._topology:
                    await self._apply(topology)
                await self._rejoin_kicked()
            except Exception:
                log.exception("following the cluster topology failed; trying again")
                self._changed.set()
                await asyncio.sleep(self._topology_interval)

    async def _fetch(self) -> Topology:
        # A healthy shard's pooled connection first: no new connection per look.
        for shard in sorted(self._shards.values(), key=lambda s: not s.healthy()):
            try:
                reply = await read_slots(shard.publisher.client)
            except IO_ERRORS:
                continue
            return Topology.parse(reply, shard.master.host)
        return await self._seeds.topology()

    async def _apply(self, topology: Topology) -> None:
        # The epochs seen before the change: the new master may deliver
        # messages of an epoch another node started since.
        seen = dict(self._epochs)
        failed_over = {
            address for address, shard in self._shards.items() if topology.failed_over(shard.master)
        }
        # A shard whose master changed, or whose canary slot moved away, is
        # replaced: its rooms move to the shard that owns them now.
        shards: dict[str, Shard] = {}
        made: list[Shard] = []
        for master in topology.masters():
            shard = self._shards.get(master.address)
            if shard is None or shard.master != master or not self._canary_owned(shard, topology):
                shard = self._new_shard(master, topology)
                shard.begin()
                made.append(shard)
            shards[master.address] = shard
        rooms = dict(self._rooms)
        try:
            await self._install(topology, shards, failed_over, seen)
        except BaseException:
            # Not installed: the next try makes its own shards, so these
            # would run (and deliver) unseen; the rooms point back.
            self._rooms = rooms
            for shard in made:
                self._spawn(shard.close(BackendUnavailable("topology change undone")), "redis-undo")
            raise

    async def _install(
        self,
        topology: Topology,
        shards: dict[str, Shard],
        failed_over: set[str],
        seen: dict[str, str],
    ) -> None:
        old = self._topology
        gone = [
            shard for address, shard in self._shards.items() if shards.get(address) is not shard
        ]
        moved: list[tuple[str, Shard, Shard]] = []
        for room, shard in self._rooms.items():
            serving = topology.owner(slot_of(RoomKeys.of(self._namespace, room).channel))
            owner = shards.get(serving.address) if serving is not None else None
            if owner is not None and owner is not shard:
                moved.append((room, shard, owner))
        if failed_over:
            self.failovers += 1
            log.warning("redis cluster failover: %s no longer serve slots", sorted(failed_over))
        elif moved or gone:
            self.migrations += 1
        log.info(
            "redis cluster topology changed (%s -> %s): %d rooms follow their slots",
            _summary(old),
            _summary(topology),
            len(moved),
        )
        subscriptions = []
        for room, shard, owner in moved:
            # Not SUNSUBSCRIBE: the old master answers MOVED (or is gone).
            shard.subscriber.forget(room)
            self._rooms[room] = owner
            subscriptions.append(owner.subscriber.subscribe(room))
        results = await asyncio.gather(*subscriptions, return_exceptions=True)
        for (room, _, _), result in zip(moved, results, strict=True):
            if isinstance(result, Exception):
                log.warning("room %s not re-subscribed after the move: %s", room, result)
        if failed_over and self._wait_replicas == 0 and self._history_size > 0:
            # Before this node sends anything to the new master (the router
            # routes by the old topology until it is installed below).
            await self._rotate(self._at_risk(old, failed_over, moved, seen), seen)
        self._topology, self._shards = topology, shards
        self._router.topology_changed()
        for shard in gone:
            self._spawn(self._retire(shard), f"redis-retire-{shard.address}")
        if moved and self._hooks is not None:
            self._hooks.resubscribed()

    async def _rejoin_kicked(self) -> None:
        # Rooms whose subscription Redis ended on its own: subscribed again
        # on the master that serves them now, and their gaps read.
        kicked = [
            room
            for shard in self._shards.values()
            for room in _take(shard.subscriber.kicked)
            if self._rooms.get(room) is shard
        ]
        if not kicked:
            return
        subscriptions = []
        for room in kicked:
            owner = self._owner_of_room(room)
            if owner is None:
                continue
            self._rooms[room] = owner
            subscriptions.append(owner.subscriber.subscribe(room))
        results = await asyncio.gather(*subscriptions, return_exceptions=True)
        failed = [result for result in results if isinstance(result, Exception)]
        log.info("%d rooms Redis unsubscribed are subscribed again", len(kicked) - len(failed))
        if self._hooks is not None:
            self._hooks.resubscribed()

    def _canary_owned(self, shard: Shard, topology: Topology) -> bool:
        owner = topology.owner(slot_of(node_channel(self._namespace, shard.canary_node)))
        return owner == shard.master

    def _at_risk(
        self,
        old: Topology | None,
        failed_over: set[str],
        moved: Sequence[tuple[str, Shard, Shard]],
        seen: dict[str, str],
    ) -> list[str]:
        # The rooms whose acknowledged messages may have gone with a dead
        # master: those this node is subscribed to there, and those it said
        # in but holds no member of any more (POST /publish, members gone),
        # with the epoch it used (added to ``seen``).
        rooms = [room for room, shard, _ in moved if shard.address in failed_over]
        assert self._history is not None
        for room, epoch in self._history.published().items():
            if room in self._rooms or old is None:
                continue
            owner = old.owner(slot_of(RoomKeys.of(self._namespace, room).channel))
            if owner is not None and owner.address in failed_over:
                rooms.append(room)
                seen.setdefault(room, epoch)
        return rooms

    async def _rotate(self, rooms: Sequence[str], seen: dict[str, str]) -> None:
        # Acknowledged messages may be lost with the old master: a new epoch,
        # so that no offset it gave is given again to another message. Only
        # the epoch this node saw before the failover is rotated: one that
        # another node started since is new already.
        assert self._history is not None
        history = self._history
        limit = asyncio.Semaphore(ROTATIONS_IN_FLIGHT)

        async def rotate(room: str, epoch: str) -> bool:
            async with limit:
                try:
                    await history.rotate(room, epoch)
                except BackendUnavailable as exc:
                    log.warning("room %s: epoch not rotated after the failover: %s", room, exc)
                    return False
                return True

        # Concurrently (bounded): says to these slots wait until it is done.
        done = await asyncio.gather(*(rotate(room, seen[room]) for room in rooms if room in seen))
        rotated = sum(done)
        self.rotated_rooms += rotated
        log.warning("failover: %d of %d rooms start a new epoch", rotated, len(rooms))

    async def _retire(self, shard: Shard) -> None:
        self._retired.append(shard)
        await shard.close(BackendUnavailable("the shard's master changed"))
        with contextlib.suppress(ValueError):
            self._retired.remove(shard)

    # --- the Backend protocol ----------------------------------------------------

    async def subscribe(self, room: str) -> None:
        """Subscribe to ``room``'s channel on its slot's shard; returns once
        that master confirmed it.

        Raises:
            BackendUnavailable: no master serves the room's slot, or it did
                not confirm within the subscribe timeout.
        """
        shard = self._owner_of_room(room)
        if shard is None:
            raise BackendUnavailable(f"no Redis Cluster master serves room {room!r}")
        self._rooms[room] = shard
        await shard.subscriber.subscribe(room)

    def unsubscribe(self, room: str) -> None:
        """Unsubscribe from ``room``'s channel (ordered after earlier calls)."""
        shard = self._rooms.pop(room, None)
        self._epochs.pop(room, None)
        if shard is not None:
            shard.subscriber.unsubscribe(room)

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
        """As :meth:`broker.backends.redis.RedisBackend.publish`, on the
        pipeline of the room's shard."""
        assert self._history is not None, "RedisClusterBackend.start() was not awaited"
        accepted: asyncio.Future[Position | None] = asyncio.get_running_loop().create_future()
        keys = RoomKeys.of(self._namespace, room)
        if history and self._history_size > 0:
            head = pack_head(self._node, exclude, published_at)
            args, position = self._history.publish(keys, head, payload)
            self._router.enqueue(args, accepted, position, self._history.publish_script)
        else:
            data = pack(self._node, exclude, published_at, payload)
            self._router.enqueue((b"SPUBLISH", keys.channel, data), accepted)
        return accepted

    async def read_history(
        self, room: str, after: int = 0, before: int | None = None, limit: int | None = None
    ) -> HistoryRead:
        """The room's position and kept messages, in one atomic look.

        Raises:
            BackendUnavailable: the room's shard could not be reached.
        """
        assert self._history is not None, "RedisClusterBackend.start() was not awaited"
        read = await self._history.read(room, after, before, limit)
        if room in self._rooms:
            self._epochs[room] = read.epoch
        return read

    async def rotate_epoch(self, room: str, stale_epoch: str) -> None:
        """Drop the room's history and position if it is still in ``stale_epoch``.

        Raises:
            BackendUnavailable: the room's shard could not be reached.
        """
        assert self._history is not None, "RedisClusterBackend.start() was not awaited"
        await self._history.rotate(room, stale_epoch)

    def track(self, membership: Membership, member: bool) -> None:
        """Record a membership in its room's presence and for crash recovery."""
        assert self._presence is not None, "RedisClusterBackend.start() was not awaited"
        self._presence.track(membership, member)

    async def presence(self, room: str, limit: int) -> PresenceRead:
        """Who is in ``room`` on every node.

        Raises:
            BackendUnavailable: the room's shard could not be reached.
        """
        assert self._room_presence is not None, "RedisClusterBackend.start() was not awaited"
        return await self._room_presence.read(room, limit)

    def healthy(self) -> bool:
        """Ready while at least one shard is: its rooms can be served (the
        rooms of a shard that is not get ``unavailable``)."""
        return any(shard.healthy() for shard in self._shards.values())

    def stats(self) -> dict[str, Any]:
        """Counters for metrics and tests, with one entry per shard."""
        shards = [shard.stats() for shard in self._shards.values()]
        presence = self._presence
        return {
            "backend": "redis-cluster",
            "published": sum(s["published"] for s in shards),
            "received": sum(s["received"] for s in shards),
            "publish_failures": sum(s["publish_failures"] for s in shards),
            "reconnects": sum(s["reconnects"] for s in shards),
            "canary_misses": sum(s["canary_misses"] for s in shards),
            "canary_lag_seconds": max((s["canary_lag_seconds"] for s in shards), default=0.0),
            "subscribed_rooms": len(self._rooms),
            "reaped_nodes": presence.reaped_nodes if presence is not None else 0,
            "presence_rewritten_rooms": (
                self._room_presence.rewritten_rooms if self._room_presence is not None else 0
            ),
            "redirects": self._router.redirects,
            "failovers": self.failovers,
            "migrations": self.migrations,
            "rotated_rooms": self.rotated_rooms,
            "shards": shards,
        }


def _take(rooms: set[str]) -> list[str]:
    taken = list(rooms)
    rooms.clear()
    return taken


def _summary(topology: Topology | None) -> str:
    if topology is None:
        return "none"
    return ", ".join(master.address for master in topology.masters())


def _nothing() -> None:
    """No node hooks: nobody to tell of a re-subscription."""
