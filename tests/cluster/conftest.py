"""Fixtures of the Redis Cluster tests: real ``redis-server --cluster-enabled
yes`` processes (:class:`~broker.bench.redis_cluster.LocalRedisCluster`, 3
masters with a replica each), backends and broker nodes on them.

Every test module here is marked ``redis``: without ``redis-server`` it is skipped
locally and fails with ``ROOMCAST_REQUIRE_REDIS=1`` (CI), as tests/conftest.py
does for the single Redis. Tests that break the cluster (failover, a shard
down) take a fresh one; the others share one per session and keep apart by
namespace.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from broker.backends.base import PresenceHooks
from broker.backends.redis import ClusterSeeds, RedisClusterBackend
from broker.backends.redis.cluster_topology import slot_of
from broker.backends.redis.envelope import RoomKeys
from broker.bench.redis_cluster import LocalRedisCluster
from tests.backends.conftest import Peer
from tests.support.wire import WireClient

# Rooms of the shards that stay up keep working while a shard is down (by
# default a cluster with uncovered slots refuses every command).
CLUSTER_ARGS = ("--cluster-require-full-coverage", "no")


def start_cluster() -> LocalRedisCluster:
    """A new local cluster: 3 masters, 1 replica each, replicas synced."""
    return LocalRedisCluster(extra_args=CLUSTER_ARGS).start()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalRedisCluster]:
    """One cluster for the session's tests that do not break it."""
    cluster = start_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def fresh_cluster() -> Iterator[LocalRedisCluster]:
    """A cluster of this test's own (failover, a shard down, resharding)."""
    cluster = start_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses."""
    return "c" + uuid.uuid4().hex[:10]


def room_slot(namespace: str, room: str) -> int:
    """The slot of ``room``'s keys and channel."""
    return slot_of(RoomKeys.of(namespace, room).channel)


def rooms_per_master(cluster: LocalRedisCluster, namespace: str, prefix: str = "room") -> list[str]:
    """One room name per master, in the order of ``cluster.master_ports()``."""
    ports = cluster.master_ports()
    found: dict[int, str] = {}
    for n in range(1000):
        room = f"{prefix}-{n}"
        port = cluster.master_of_slot(room_slot(namespace, room))
        found.setdefault(port, room)
        if len(found) == len(ports):
            return [found[port] for port in ports]
    raise AssertionError("no room found on every master")


ClusterPeers = Callable[..., Awaitable[list[Peer]]]


@pytest.fixture
async def cluster_peers(namespace: str) -> AsyncIterator[ClusterPeers]:
    """``await cluster_peers(cluster, n, **options)``: n started cluster
    backends (with presence hooks); all closed at the end."""
    started: list[Peer] = []

    async def start(
        cluster: LocalRedisCluster,
        count: int,
        hooks: PresenceHooks | None = None,
        **options: Any,
    ) -> list[Peer]:
        group = []
        for i in range(count):
            name = f"n-{len(started)}-{i}"
            backend = RedisClusterBackend(ClusterSeeds(cluster.seeds), name, namespace, **options)
            peer = Peer(name, backend)
            await backend.start(peer.deliver, hooks)
            started.append(peer)
            group.append(peer)
        return group

    yield start
    for peer in started:
        await peer.backend.close()


class SteadySpeaker:
    """A member that says ``count`` messages (bodies 0, 1, ...) in ``room``
    at a steady pace in the background, keeping every reply in order."""

    def __init__(self, speaker: WireClient, room: str, count: int, pace: float) -> None:
        self.replies: list[dict[str, Any]] = []
        self._task = asyncio.create_task(self._speak(speaker, room, count, pace))

    async def _speak(self, speaker: WireClient, room: str, count: int, pace: float) -> None:
        for i in range(count):
            self.replies.append(await speaker.request("say", room=room, body=i, timeout=15))
            # A steady rate, not synchronisation.
            await asyncio.sleep(pace)

    async def said(self, count: int) -> None:
        """Wait until ``count`` says were answered."""
        while len(self.replies) < count and not self._task.done():
            await asyncio.sleep(0.02)

    async def done(self) -> list[dict[str, Any]]:
        """Wait for the last reply; every reply, in order."""
        await self._task
        return self.replies
