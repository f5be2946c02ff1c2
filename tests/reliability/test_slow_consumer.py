"""A member that stops reading is cut off with 1013, while the other members
of its room keep receiving everything on time and the node's memory stays
bounded (broker/outbox.py, the slow-consumer policy)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import BrokerFactory, ClientFactory
from tests.reliability.observe import eventually, rss_bytes, scrape
from tests.support.processes import BrokerProcess
from tests.support.wire import WireClient

ROOM = "firehose"
HIGH_WATER = 256 * 1024
HARD_LIMIT = 4 * 1024 * 1024
GRACE = 0.5
BODY = "x" * 16 * 1024
SAYS = 640  # 10 MiB of bodies: more than the hard limit plus the kernel's buffers
BATCH = 32
# 40 MiB said while the member stalls: kept for it, they would outgrow the bound.
SAYS_FOR_MEMORY = 2560
RSS_GROWTH_BOUND = 24 * 1024 * 1024
LATENCY_BOUND = 2.0  # seconds from say to delivery at the member that reads


@pytest.fixture
def node(broker: BrokerFactory) -> BrokerProcess:
    """One node with a small slow-consumer policy, so the test is quick."""
    return broker(
        "--slow-consumer-high-water", str(HIGH_WATER),
        "--slow-consumer-grace", str(GRACE),
        "--slow-consumer-hard-limit", str(HARD_LIMIT),
    )  # fmt: skip


@pytest.fixture
async def stalled(node: BrokerProcess) -> AsyncIterator[ClientConnection]:
    """A member of ``ROOM`` that has stopped reading its socket."""
    sock = socket.socket()
    # A small receive buffer, so the node's own buffer fills sooner.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", node.port))
    ws = await connect(node.url, sock=sock, max_queue=1, ping_interval=None)
    try:
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send(json.dumps({"type": "join", "room": ROOM, "ref": 1}))
        ok = json.loads(await ws.recv())
        assert (ok["type"], ok["ref"]) == ("ok", 1)
        ws.transport.pause_reading()
        yield ws
    finally:
        # Do not read megabytes to close politely: drop the connection.
        ws.transport.abort()
        await ws.wait_closed()


async def publish(publisher: WireClient, says: int = SAYS) -> None:
    """Say ``says`` big timestamped messages as fast as the node accepts them."""
    for first in range(0, says, BATCH):
        replies = await asyncio.gather(
            *(
                publisher.request("say", room=ROOM, body={"n": n, "at": time.time(), "pad": BODY})
                for n in range(first, first + BATCH)
            )
        )
        assert all(reply["type"] == "ok" for reply in replies), replies


async def test_member_that_reads_gets_everything_on_time_beside_a_stalled_one(
    node: BrokerProcess, stalled: ClientConnection, wire: ClientFactory
) -> None:
    reader = await wire(node.url)
    publisher = await wire(node.url)
    await reader.join(ROOM)
    await publisher.join(ROOM)
    await reader.expect("joined", session=publisher.session)

    sending = asyncio.create_task(publish(publisher))
    late = []
    for n in range(SAYS):
        event = await reader.expect("message", timeout=10)
        assert event["body"]["n"] == n
        late.append(time.time() - event["body"]["at"])
    await sending

    assert max(late) < LATENCY_BOUND, f"slowest delivery took {max(late):.2f}s"


async def test_stalled_member_is_closed_with_1013_and_counted(
    node: BrokerProcess, stalled: ClientConnection, wire: ClientFactory
) -> None:
    publisher = await wire(node.url)
    await publisher.join(ROOM)

    await publish(publisher)

    await eventually(
        lambda: scrape(node).value("roomcast_slow_consumer_disconnects_total") >= 1,
        timeout=5,
    )
    stalled.transport.resume_reading()
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(10):
            async for _ in stalled:
                pass
    assert stalled.close_code == 1013


async def test_node_memory_stays_bounded_while_a_member_stalls(
    node: BrokerProcess, stalled: ClientConnection, wire: ClientFactory
) -> None:
    assert node.process is not None
    pid = node.process.pid
    publisher = await wire(node.url)
    await publisher.join(ROOM)
    baseline = rss_bytes(pid)
    peak = baseline

    sending = asyncio.create_task(publish(publisher, SAYS_FOR_MEMORY))
    while not sending.done():
        peak = max(peak, rss_bytes(pid))
        await asyncio.wait({sending}, timeout=0.05)  # sample the RSS while it runs
    await sending

    growth = peak - baseline
    assert growth < RSS_GROWTH_BOUND, f"RSS grew by {growth / 2**20:.1f} MiB"
