"""Three broker processes on a 3-master Redis Cluster behave as one broker,
in rooms on every shard: delivery across nodes, order, exactly once,
join and leave events, history and recovery, presence."""

from __future__ import annotations

import asyncio
import json

import pytest

from broker.bench.redis_cluster import LocalRedisCluster
from tests.cluster.conftest import rooms_per_master
from tests.conftest import BrokerFactory, ClientFactory
from tests.support.processes import BrokerProcess, http_get

pytestmark = pytest.mark.redis


@pytest.fixture
def nodes(
    broker: BrokerFactory, redis_cluster: LocalRedisCluster, namespace: str
) -> list[BrokerProcess]:
    """Three nodes on the session's cluster, under this test's namespace."""
    return [
        broker(
            "--redis-cluster",
            redis_cluster.seed_list,
            "--namespace",
            namespace,
            "--node-id",
            f"n-{i}",
        )
        for i in range(3)
    ]


@pytest.fixture
def rooms(redis_cluster: LocalRedisCluster, namespace: str) -> list[str]:
    """One room on each master."""
    return rooms_per_master(redis_cluster, namespace)


async def test_messages_reach_members_on_every_node_once_and_in_order_in_every_shard(
    nodes: list[BrokerProcess], rooms: list[str], wire: ClientFactory
) -> None:
    clients = [await wire(node.url) for node in nodes]
    for room in rooms:
        for client in clients:
            await client.join(room)
    sender, receivers = clients[0], clients[1:]

    for i in range(30):
        await sender.say(rooms[i % len(rooms)], i)

    for receiver in receivers:
        got: dict[str, list[int]] = {room: [] for room in rooms}
        while sum(map(len, got.values())) < 30:
            event = await receiver.next_event()
            if event["type"] == "message":
                got[event["room"]].append(event["body"])
        assert got == {room: list(range(k, 30, len(rooms))) for k, room in enumerate(rooms)}
        await receiver.expect_silence()


async def test_join_and_leave_are_announced_across_nodes_in_every_shard(
    nodes: list[BrokerProcess], rooms: list[str], wire: ClientFactory
) -> None:
    watcher = await wire(nodes[0].url)
    mover = await wire(nodes[2].url)
    for room in rooms:
        await watcher.join(room)

    for room in rooms:
        await mover.join(room)
        await watcher.expect("joined", room=room, session=mover.session)
        reply = await mover.request("leave", room=room)
        assert reply["type"] == "ok"
        await watcher.expect("left", room=room, session=mover.session)


async def test_a_member_back_with_its_position_gets_what_it_missed_in_every_shard(
    nodes: list[BrokerProcess], rooms: list[str], wire: ClientFactory
) -> None:
    speaker = await wire(nodes[0].url)
    for room in rooms:
        await speaker.join(room)
        position = (await speaker.say(room, "first"))["offset"], None
        epoch = (await speaker.request("history", room=room))["epoch"]
        await speaker.say(room, "second")
        await speaker.say(room, "third")
        late = await wire(nodes[1].url)

        ok = await late.request("join", room=room, since={"offset": position[0], "epoch": epoch})

        assert (ok["type"], ok.get("recovered")) == ("ok", True), ok
        bodies = [(await late.expect("message", room=room))["body"] for _ in range(2)]
        assert bodies == ["second", "third"]
        page = await late.request("history", room=room)
        assert [m["body"] for m in page["messages"]] == ["first", "second", "third"]


async def test_presence_lists_the_members_of_every_node_in_every_shard(
    nodes: list[BrokerProcess], rooms: list[str], wire: ClientFactory
) -> None:
    clients = [await wire(node.url) for node in nodes]
    for room in rooms:
        for client in clients:
            await client.join(room)

    for room in rooms:
        for asker in clients:
            reply = await asker.request("presence", room=room)
            assert {m["session"] for m in reply["members"]} == {c.session for c in clients}
            assert reply["count"] == 3


async def test_healthz_lists_every_shard_up(nodes: list[BrokerProcess]) -> None:
    status, body = await asyncio.to_thread(nodes[0].health)

    health = json.loads(body)
    assert status == 200
    assert len(health["shards"]) == 3
    assert all(shard["up"] for shard in health["shards"])


async def test_metrics_have_one_series_per_shard(nodes: list[BrokerProcess]) -> None:
    _, body = await asyncio.to_thread(http_get, nodes[0].http + "/metrics")

    lines = [
        line for line in body.decode().splitlines() if line.startswith("roomcast_backend_shard_up{")
    ]
    assert len(lines) == 3
    assert all(line.endswith(" 1.0") for line in lines)
