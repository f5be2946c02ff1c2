"""``--redis-cluster-wait-replicas``: a publish is acknowledged only once
that many replicas have it (WAIT); when they do not confirm in time, its
outcome is unknown (``internal``), never an ``ok``."""

from __future__ import annotations

import pytest

from broker.backends.base import OutcomeUnknown, Position
from broker.bench.redis_cluster import LocalRedisCluster
from tests.cluster.conftest import ClusterPeers

pytestmark = pytest.mark.redis

FRAME = b'{"type":"message","room":"lobby","from":"s-1","body":1}'


async def test_a_publish_waited_for_by_its_replica_is_acknowledged(
    redis_cluster: LocalRedisCluster, cluster_peers: ClusterPeers
) -> None:
    (peer,) = await cluster_peers(redis_cluster, 1, history_size=10, wait_replicas=1)

    position = await peer.backend.publish("lobby", "s-1", FRAME)

    assert isinstance(position, Position) and position.offset == 1


async def test_a_publish_more_replicas_than_exist_must_confirm_is_not_acknowledged(
    redis_cluster: LocalRedisCluster, cluster_peers: ClusterPeers
) -> None:
    (peer,) = await cluster_peers(
        redis_cluster, 1, history_size=10, wait_replicas=2, wait_timeout=0.05
    )

    with pytest.raises(OutcomeUnknown, match="no replica confirmed"):
        await peer.backend.publish("lobby", "s-1", FRAME)
    assert peer.backend.stats()["publish_failures"] == 1
