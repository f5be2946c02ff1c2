"""The positions, history and presence contract suites
(tests/backends/test_backend_history.py, test_backend_presence.py) run
unchanged against the Redis Cluster backend: their tests are imported here,
and their peer fixtures overridden with cluster backends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from broker.bench.redis_cluster import LocalRedisCluster
from tests.backends import test_backend_history, test_backend_presence
from tests.backends.conftest import Peer
from tests.backends.test_backend_history import SIZE, HistoryPeers
from tests.backends.test_backend_presence import HOOKS, PresencePeers
from tests.cluster.conftest import ClusterPeers

pytestmark = pytest.mark.redis

# The suites themselves: every test function of both modules.
globals().update(
    {
        name: test
        for suite in (test_backend_history, test_backend_presence)
        for name, test in vars(suite).items()
        if name.startswith("test_")
    }
)


@pytest.fixture
async def history_peers(
    redis_cluster: LocalRedisCluster, cluster_peers: ClusterPeers
) -> AsyncIterator[HistoryPeers]:
    """Cluster backends keeping ``SIZE`` messages per room."""

    async def start(count: int) -> list[Peer]:
        return await cluster_peers(
            redis_cluster, count, history_size=SIZE, history_ttl=600.0, history_meta_ttl=3600.0
        )

    yield start


@pytest.fixture
async def presence_peers(
    redis_cluster: LocalRedisCluster, cluster_peers: ClusterPeers
) -> AsyncIterator[PresencePeers]:
    """Cluster backends started with presence hooks, as a node starts them."""

    async def start(count: int) -> list[Peer]:
        return await cluster_peers(redis_cluster, count, HOOKS)

    yield start
