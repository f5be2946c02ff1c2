"""A room's slot moves to another master while a member says at a steady
rate (``CLUSTER SETSLOT`` IMPORTING/MIGRATING, ``MIGRATE``, ``SETSLOT
NODE``): every say is taken (ASK and MOVED are followed), and the members
keep receiving everything, once and in order, in the same epoch (a
migration moves the keys: nothing is lost)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broker.bench.redis_cluster import LocalRedisCluster
from tests.cluster.conftest import SteadySpeaker, room_slot, rooms_per_master
from tests.conftest import BrokerFactory, ClientFactory
from tests.support.wire import WireClient

pytestmark = pytest.mark.redis

SAYS = 120
PACE = 0.02  # seconds between says: a steady rate, not synchronisation


def move_slot(cluster: LocalRedisCluster, slot: int, source: int, target: int) -> None:
    """Migrate ``slot`` with its keys from ``source`` to ``target``, as
    ``redis-cli --cluster reshard`` does it."""
    begin_move(cluster, slot, source, target)
    finish_move(cluster, slot, source, target)


def begin_move(cluster: LocalRedisCluster, slot: int, source: int, target: int) -> None:
    """Mark ``slot`` importing on ``target`` and migrating on ``source``."""
    source_id = cluster.cli(source, "cluster", "myid")
    target_id = cluster.cli(target, "cluster", "myid")
    cluster.cli(target, "cluster", "setslot", str(slot), "importing", source_id)
    cluster.cli(source, "cluster", "setslot", str(slot), "migrating", target_id)


def finish_move(cluster: LocalRedisCluster, slot: int, source: int, target: int) -> None:
    """Move ``slot``'s keys to ``target`` and give it the slot everywhere."""
    target_id = cluster.cli(target, "cluster", "myid")
    while True:
        keys = cluster.cli(source, "cluster", "getkeysinslot", str(slot), "100").split()
        if not keys:
            break
        cluster.cli(source, "migrate", "127.0.0.1", str(target), "", "0", "5000", "keys", *keys)
    for port in (target, source, *cluster.master_ports()):
        cluster.cli(port, "cluster", "setslot", str(slot), "node", target_id)


async def messages(client: WireClient, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len(got) < count:
        event = await client.next_event(10)
        if event["type"] == "message":
            got.append(event)
    return got


async def test_members_keep_receiving_everything_while_their_room_slot_moves(
    broker: BrokerFactory,
    fresh_cluster: LocalRedisCluster,
    namespace: str,
    wire: ClientFactory,
) -> None:
    nodes = [
        broker("--redis-cluster", fresh_cluster.seed_list, "--namespace", namespace)
        for _ in range(2)
    ]
    room, other, _ = rooms_per_master(fresh_cluster, namespace)
    slot = room_slot(namespace, room)
    source = fresh_cluster.master_of_slot(slot)
    target = fresh_cluster.master_of_slot(room_slot(namespace, other))
    speaker, listener = await wire(nodes[0].url), await wire(nodes[1].url)
    await listener.join(room)
    await speaker.join(room)
    await listener.expect("joined", session=speaker.session)
    speaking = SteadySpeaker(speaker, room, SAYS, PACE)
    await speaking.said(SAYS // 4)
    await asyncio.to_thread(move_slot, fresh_cluster, slot, source, target)
    replies = await speaking.done()
    got = await messages(listener, SAYS)

    assert fresh_cluster.master_of_slot(slot) == target
    assert all(reply["type"] == "ok" for reply in replies), [
        reply for reply in replies if reply["type"] != "ok"
    ]
    assert [event["body"] for event in got] == list(range(SAYS))
    assert [event["offset"] for event in got] == list(range(1, SAYS + 1))
    assert len({event["epoch"] for event in got}) == 1
    await listener.expect_silence()
