"""broker.listener: accepting on a real loopback socket (port 0), the
keepalive round, and closing every connection at a drain."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from broker.link import WireSettings
from broker.listener import KEEPALIVE_SLICES, Listener
from broker.wire import Wire
from tests.support.fakes import FakeEdgeApp

PING_INTERVAL, PING_TIMEOUT = 20.0, 20.0


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    settings = WireSettings(1024, handshake_timeout=10.0, close_timeout=1.0, compression=False)
    # No keepalive task: the tests run keepalive rounds themselves.
    listener = Listener(FakeEdgeApp(), settings, 0.0, PING_TIMEOUT)
    listener.ping_interval = PING_INTERVAL
    await listener.start("127.0.0.1", 0)
    yield listener
    await listener.drain(0.0, 1001, "test over")
    await listener.close()


def url(listener: Listener) -> str:
    return f"ws://127.0.0.1:{listener.sockets[0].getsockname()[1]}/ws"


async def only_wire(listener: Listener) -> Wire:
    [wire] = listener.open_wires()
    return wire


async def test_an_accepted_websocket_reaches_the_app(listener: Listener) -> None:
    async with connect(url(listener)) as ws:
        await ws.send("hello")
        pong = await ws.ping()
        await pong  # answered after the text message: that was handled
        app = listener.app
        assert isinstance(app, FakeEdgeApp)
        assert app.handlers[0].messages == [b"hello"]


async def test_a_quiet_connection_is_pinged(listener: Listener) -> None:
    async with connect(url(listener)):
        wire = await only_wire(listener)
        listener.keepalive_round(wire.last_seen + PING_INTERVAL)
        assert wire.ping_sent


async def test_the_keepalive_sweep_pings_each_quiet_connection_once_a_slice_at_a_time(
    listener: Listener,
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(40):
            await stack.enter_async_context(connect(url(listener)))
        wires = listener.open_wires()
        now = max(wire.last_seen for wire in wires) + PING_INTERVAL
        pinged_per_slice = []
        for index in range(KEEPALIVE_SLICES):
            before = {wire for wire in wires if wire.ping_sent}
            listener.keepalive_slice(index, now)
            pinged_per_slice.append({wire for wire in wires if wire.ping_sent} - before)
        assert sum(len(pinged) for pinged in pinged_per_slice) == len(wires) == 40
        assert max(len(pinged) for pinged in pinged_per_slice) < 40


async def test_a_busy_connection_is_not_pinged(listener: Listener) -> None:
    async with connect(url(listener)):
        wire = await only_wire(listener)
        listener.keepalive_round(wire.last_seen + PING_INTERVAL / 2)
        assert not wire.ping_sent


async def test_an_unanswered_ping_past_the_timeout_drops_the_connection(
    listener: Listener,
) -> None:
    async with connect(url(listener)) as ws:
        wire = await only_wire(listener)
        wire.ping_sent = wire.last_seen
        listener.keepalive_round(wire.ping_sent + PING_TIMEOUT + 1)
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1006


async def test_a_drain_closes_every_websocket_with_its_code(listener: Listener) -> None:
    async with connect(url(listener)) as first, connect(url(listener)) as second:
        await listener.drain(0.0, 1001, "draining")
        for ws in (first, second):
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert (ws.close_code, ws.close_reason) == (1001, "draining")
    assert listener.links == set()


async def test_a_drain_aborts_connections_still_in_their_handshake(listener: Listener) -> None:
    port = listener.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /ws HTTP/1.1\r\n")  # a head that never ends
    await writer.drain()
    await listener.drain(0.0, 1001, "draining")
    assert await reader.read() == b""
    assert listener.links == set()
    writer.close()


async def test_after_stop_accepting_no_connection_is_taken(listener: Listener) -> None:
    port = listener.sockets[0].getsockname()[1]
    listener.stop_accepting()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
