"""Publishes while a room's slot migrates: Redis answers ``TRYAGAIN`` or
``ASK`` (the publish script names the room's channel as a key, which no
master holds, so it cannot run until the slot has moved), then ``MOVED``;
each is sent again within the retry window, and every publish is taken,
once, in order. The subscribed node follows the slot: it re-subscribes on
the new master and is told ``resubscribed`` (its node then reads what it
missed from history)."""

from __future__ import annotations

import asyncio

import pytest

from broker.backends.base import PresenceHooks
from broker.bench.redis_cluster import LocalRedisCluster
from tests.cluster.conftest import ClusterPeers, room_slot, rooms_per_master
from tests.cluster.test_resharding import begin_move, finish_move

pytestmark = pytest.mark.redis

FRAME = b'{"type":"message","room":"r","from":"s-1","body":1}'


async def test_publishes_during_a_slot_move_are_retried_and_the_subscriber_follows(
    fresh_cluster: LocalRedisCluster, cluster_peers: ClusterPeers, namespace: str
) -> None:
    whole = asyncio.Event()
    hooks = PresenceHooks(lambda _: None, lambda _: None, whole.set)
    (listener,) = await cluster_peers(fresh_cluster, 1, hooks, history_size=10)
    (speaker,) = await cluster_peers(fresh_cluster, 1, history_size=10)
    room, other, _ = rooms_per_master(fresh_cluster, namespace)
    slot = room_slot(namespace, room)
    source = fresh_cluster.master_of_slot(slot)
    target = fresh_cluster.master_of_slot(room_slot(namespace, other))
    await listener.backend.subscribe(room)
    first = await speaker.backend.publish(room, "s-1", FRAME)

    await asyncio.to_thread(begin_move, fresh_cluster, slot, source, target)
    during = [speaker.backend.publish(room, "s-1", FRAME) for _ in range(20)]
    await asyncio.to_thread(finish_move, fresh_cluster, slot, source, target)
    positions = [first, *await asyncio.gather(*during)]
    await asyncio.wait_for(whole.wait(), 10)
    positions.append(await speaker.backend.publish(room, "s-1", FRAME))

    assert [p.offset for p in positions if p is not None] == list(range(1, 23))
    assert len({p.epoch for p in positions if p is not None}) == 1
    assert speaker.backend.stats()["redirects"] >= 20
    async with asyncio.timeout(5):  # live again on the new master
        while not listener.received or listener.received[-1].offset != 22:
            await listener.wait_for(len(listener.received) + 1)
    assert listener.received[0].offset == 1
    read = await listener.backend.read_history(room)
    assert [offset for offset, _ in read.messages] == list(range(13, 23))  # the last 10
    shards = {s["shard"]: s["rooms"] for s in listener.backend.stats()["shards"]}
    assert shards[f"127.0.0.1:{target}"] == 1
