"""A master of the Redis Cluster dies (SIGKILL) while a member says at a
steady rate: its replica takes over, delivery resumes, every member ends up
with every offset the cluster still holds, exactly once and in order, and
what was lost shows as an epoch change, never as a silent gap."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from broker.bench.redis_cluster import LocalRedisCluster
from tests.cluster.conftest import SteadySpeaker, room_slot, rooms_per_master
from tests.conftest import BrokerFactory, ClientFactory
from tests.reliability.observe import eventually
from tests.support.processes import BrokerProcess
from tests.support.wire import WireClient

pytestmark = pytest.mark.redis

SAYS = 150
PACE = 0.02  # seconds between says: a steady rate, not synchronisation


@pytest.fixture
def nodes(
    broker: BrokerFactory, fresh_cluster: LocalRedisCluster, namespace: str
) -> Iterator[list[BrokerProcess]]:
    """Two broker nodes on a cluster of this test's own."""
    yield [
        broker(
            "--redis-cluster",
            fresh_cluster.seed_list,
            "--namespace",
            namespace,
            "--node-id",
            f"n-{i}",
            "--history-size",
            str(SAYS),
        )
        for i in range(2)
    ]


async def messages_until_silence(client: WireClient, seconds: float = 3.0) -> list[dict[str, Any]]:
    """Every ``message`` event until none arrives for ``seconds``."""
    got: list[dict[str, Any]] = []
    while True:
        try:
            event = await client.next_event(seconds)
        except TimeoutError:
            return got
        if event["type"] == "message":
            got.append(event)


async def test_a_killed_master_loses_only_unreplicated_messages_and_never_silently(
    nodes: list[BrokerProcess],
    fresh_cluster: LocalRedisCluster,
    namespace: str,
    wire: ClientFactory,
) -> None:
    room = rooms_per_master(fresh_cluster, namespace)[0]
    slot = room_slot(namespace, room)
    master = fresh_cluster.master_of_slot(slot)
    speaker, listener = await wire(nodes[0].url), await wire(nodes[1].url)
    await listener.join(room)
    await speaker.join(room)
    await listener.expect("joined", session=speaker.session)
    speaking = SteadySpeaker(speaker, room, SAYS, PACE)
    await speaking.said(SAYS // 4)
    await asyncio.to_thread(fresh_cluster.kill, master)
    await asyncio.to_thread(fresh_cluster.wait_for_new_master, slot, master)
    replies = await speaking.done()
    got = await messages_until_silence(listener)

    # Answers are honest: ok, or unavailable (nothing published), or
    # internal (unknown); never anything else.
    codes = {reply["type"] if reply["type"] == "ok" else reply["code"] for reply in replies}
    assert codes <= {"ok", "unavailable", "internal"}, codes
    acked = {(r["epoch"], r["offset"]): i for i, r in enumerate(replies) if r["type"] == "ok"}
    epochs = list(dict.fromkeys(event["epoch"] for event in got))
    # Within each epoch: offsets from 1, one after another (no silent gap,
    # no duplicate), and each offset holds the message acknowledged with it.
    for epoch in epochs:
        offsets = [event["offset"] for event in got if event["epoch"] == epoch]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), (epoch, offsets)
    for event in got:
        key = (event["epoch"], event["offset"])
        if key in acked:
            assert event["body"] == acked[key], key
    # Delivery resumed on the new master, in a new epoch (the failover may
    # have lost acknowledged messages), and the member has all it holds.
    assert len(epochs) >= 2, epochs
    last = epochs[-1]
    after = [i for (epoch, _), i in acked.items() if epoch == last]
    assert after, "no say was acknowledged after the failover"
    page = await listener.request("history", room=room, limit=SAYS)
    assert page.get("epoch") == last, page
    kept = [(m["offset"], m["body"]) for m in page["messages"]]
    assert [(e["offset"], e["body"]) for e in got if e["epoch"] == last] == kept
    # What the member lacks of the acknowledged messages is only what the
    # old epoch lost: everything acknowledged in the last epoch arrived.
    received = {(e["epoch"], e["offset"]) for e in got}
    assert all(key in received for key in acked if key[0] == last)
    status, body = await asyncio.to_thread(nodes[1].health)
    assert status == 200
    assert all(shard["up"] for shard in json.loads(body)["shards"])


async def test_a_room_said_in_and_left_starts_a_new_epoch_after_its_master_failed_over(
    nodes: list[BrokerProcess],
    fresh_cluster: LocalRedisCluster,
    namespace: str,
    wire: ClientFactory,
) -> None:
    # No node holds a member of the room at the failover: the node that said
    # in it must still take its acknowledged messages for possibly lost.
    room = rooms_per_master(fresh_cluster, namespace)[0]
    slot = room_slot(namespace, room)
    master = fresh_cluster.master_of_slot(slot)
    speaker = await wire(nodes[0].url)
    await speaker.join(room)
    for i in range(3):
        last = await speaker.request("say", room=room, body=i)
    await speaker.request("leave", room=room)
    await asyncio.to_thread(fresh_cluster.kill, master)
    await asyncio.to_thread(fresh_cluster.wait_for_new_master, slot, master)
    await eventually(lambda: "failover: 1 of 1 rooms start a new epoch" in nodes[0].log(), 15)

    joiner = await wire(nodes[1].url)
    ok = await joiner.request(
        "join", room=room, since={"offset": last["offset"], "epoch": last["epoch"]}
    )
    assert ok["type"] == "ok", ok
    assert ok["recovered"] is False
    assert ok["epoch"] != last["epoch"]
