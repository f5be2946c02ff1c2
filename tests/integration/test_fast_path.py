"""The coalescing fan-out path keeps the contract: every member gets every
message exactly once and in order, the sender never gets its own, and a
connection that negotiated permessage-deflate beside plain ones gets the same.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.conftest import BrokerFactory, ClientFactory
from tests.support.processes import BrokerProcess, RedisServer
from tests.support.wire import WireClient

ROOMS = ("burst-a", "burst-b", "burst-c")
PER_ROOM = 150


async def _burst_mixing_rooms(sender: WireClient) -> None:
    """Say PER_ROOM messages to each room, interleaved, without awaiting replies."""
    for i in range(PER_ROOM):
        for room in ROOMS:
            await sender.send_raw(json.dumps({"type": "say", "room": room, "body": [room, i]}))


async def _received(client: WireClient, count: int) -> dict[str, list[int]]:
    bodies: dict[str, list[int]] = {room: [] for room in ROOMS}
    while sum(map(len, bodies.values())) < count:
        event = await client.next_event()
        if event["type"] == "message":
            room, seq = event["body"]
            assert room == event["room"]
            bodies[room].append(seq)
    return bodies


async def _check_burst(sender: WireClient, members: list[WireClient]) -> None:
    for client in (sender, *members):
        for room in ROOMS:
            await client.join(room)
    await _burst_mixing_rooms(sender)
    expected = {room: list(range(PER_ROOM)) for room in ROOMS}
    results = await asyncio.gather(*(_received(m, PER_ROOM * len(ROOMS)) for m in members))
    for got in results:
        assert got == expected
    # Every member got everything, so the sender's own copies, had there been
    # any, would have been written by now: it saw only others' joins.
    await sender.request("ping")
    while not sender.events.empty():
        assert sender.events.get_nowait()["type"] == "joined"


@pytest.fixture
def compressing_node(broker: BrokerFactory) -> BrokerProcess:
    """A node that offers permessage-deflate."""
    return broker("--compression")


async def test_burst_mixing_rooms_reaches_plain_and_compressed_members_in_order(
    compressing_node: BrokerProcess, wire: ClientFactory
) -> None:
    sender = await wire(compressing_node.url, compression=None)
    plain = [await wire(compressing_node.url, compression=None) for _ in range(3)]
    deflate = [await wire(compressing_node.url, compression="deflate") for _ in range(2)]
    assert all(c.ws.protocol.extensions for c in deflate)
    assert not any(c.ws.protocol.extensions for c in plain)

    await _check_burst(sender, plain + deflate)


@pytest.mark.redis
async def test_burst_mixing_rooms_crosses_nodes_in_order(
    broker: BrokerFactory, shared_redis: RedisServer, namespace: str, wire: ClientFactory
) -> None:
    nodes = [broker("--redis-url", shared_redis.url, "--namespace", namespace) for _ in range(2)]
    sender = await wire(nodes[0].url)
    members = [await wire(nodes[i % 2].url) for i in range(4)]

    await _check_burst(sender, members)
