"""``--workers`` takes ``--redis-cluster`` as it takes ``--redis-url``: the
workers start as nodes of the cluster, and a message reaches every member
whichever worker it is on."""

from __future__ import annotations

import asyncio

import pytest

from broker.bench.redis_cluster import LocalRedisCluster
from tests.conftest import BrokerFactory, ClientFactory

pytestmark = pytest.mark.redis


async def test_workers_serve_one_port_as_nodes_of_the_cluster(
    broker: BrokerFactory, redis_cluster: LocalRedisCluster, namespace: str, wire: ClientFactory
) -> None:
    node = broker(
        "--redis-cluster", redis_cluster.seed_list, "--namespace", namespace, "--workers", "2"
    )
    clients = [await wire(node.url) for _ in range(6)]
    for client in clients:
        await client.join("lobby")

    await clients[0].say("lobby", "hi")

    for client in clients[1:]:
        while (event := await client.next_event())["type"] != "message":
            pass
        assert event["body"] == "hi"
    assert await asyncio.to_thread(node.terminate) == 0
