"""A whole shard down (its master and its replica killed): the rooms of the
other shards keep working, that shard's rooms answer ``unavailable``, and
``/healthz`` stays 200 listing the shard as down."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from broker.bench.redis_cluster import LocalRedisCluster
from tests.cluster.conftest import room_slot, rooms_per_master
from tests.conftest import BrokerFactory, ClientFactory

pytestmark = pytest.mark.redis


def replica_of(cluster: LocalRedisCluster, master: int) -> int:
    """The port of ``master``'s replica (from ``CLUSTER NODES``)."""
    lines = [line.split() for line in cluster.cli(master, "cluster", "nodes").splitlines()]
    ids = {fields[0]: int(fields[1].split("@")[0].rsplit(":", 1)[1]) for fields in lines}
    (master_id,) = [node for node, port in ids.items() if port == master]
    (replica,) = [ids[fields[0]] for fields in lines if fields[3] == master_id]
    return replica


async def test_a_shard_down_fails_only_its_own_rooms(
    broker: BrokerFactory,
    fresh_cluster: LocalRedisCluster,
    namespace: str,
    wire: ClientFactory,
) -> None:
    nodes = [
        broker("--redis-cluster", fresh_cluster.seed_list, "--namespace", namespace)
        for _ in range(2)
    ]
    rooms = rooms_per_master(fresh_cluster, namespace)
    down, *up = rooms
    master = fresh_cluster.master_of_slot(room_slot(namespace, down))
    speaker, listener = await wire(nodes[0].url), await wire(nodes[1].url)
    for room in rooms:
        await listener.join(room)
        await speaker.join(room)
        await listener.expect("joined", room=room, session=speaker.session)

    replica = replica_of(fresh_cluster, master)
    await asyncio.to_thread(fresh_cluster.kill, replica)
    await asyncio.to_thread(fresh_cluster.kill, master)

    reply = await speaker.request("say", room=down, body="lost", timeout=15)
    assert (reply["type"], reply.get("code")) == ("error", "unavailable"), reply
    for room in up:
        await speaker.say(room, f"still in {room}")
        await listener.expect("message", room=room, body=f"still in {room}")
    deadline = time.monotonic() + 10
    while True:
        status, body = await asyncio.to_thread(nodes[1].health)
        shards = {s["shard"]: s["up"] for s in json.loads(body)["shards"]}
        if not shards[f"127.0.0.1:{master}"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)  # polling another process's view
    assert status == 200
    assert shards == {address: not address.endswith(f":{master}") for address in shards}
