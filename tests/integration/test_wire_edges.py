"""Edges of the connection driver a hostile or unlucky client can reach."""

from __future__ import annotations

import asyncio
import json
import socket
import struct

from tests.conftest import BrokerFactory, ClientFactory
from tests.reliability.observe import eventually
from tests.support.processes import BrokerProcess

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    head = bytes(((0x80 if fin else 0) | opcode, 0x80 | len(payload)))
    return head + b"\0\0\0\0" + payload  # a zero mask leaves the payload as it is


async def test_a_flood_of_empty_continuation_frames_does_not_stall_the_node(
    broker: BrokerFactory, wire: ClientFactory
) -> None:
    node = broker()
    watcher = await wire(node.url)
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.write(HANDSHAKE)
    await reader.readuntil(b"\r\n\r\n")

    writer.write(_masked(0x1, b"[", fin=False) + _masked(0x0, b"", fin=False) * 50_000)
    await writer.drain()

    # The node answers another client promptly while it digests the flood.
    started = asyncio.get_running_loop().time()
    pong = await watcher.request("ping", timeout=5)
    assert pong["type"] == "pong"
    assert asyncio.get_running_loop().time() - started < 1.0
    writer.close()


async def test_a_client_that_drops_during_a_drain_does_not_break_it(
    broker: BrokerFactory, wire: ClientFactory
) -> None:
    node = broker("--drain-seconds", "2")
    clients = [await wire(node.url) for _ in range(4)]
    for client in clients:
        await client.join("drain")

    assert node.process is not None
    node.process.terminate()
    await asyncio.sleep(0.2)  # the drain has taken its list of connections
    clients[-1].ws.transport.abort()

    for client in clients[:-1]:
        await client.wait_closed()
        assert client.ws.close_code == 1001
    assert await asyncio.to_thread(node.process.wait, 20) == 0


async def test_frames_held_behind_joins_keep_their_order_and_all_get_replies(
    broker: BrokerFactory, wire: ClientFactory
) -> None:
    node = broker("--max-rooms-per-session", "0")
    client = await wire(node.url)
    # Joins interleaved with pings: each join holds back what follows it.
    frames = []
    for i in range(100):
        frames.append(json.dumps({"type": "join", "room": f"r{i}", "ref": f"j{i}"}))
        frames.append(json.dumps({"type": "ping", "ref": f"p{i}"}))
    replies = [
        client.replies.setdefault(f"{kind}{i}", asyncio.get_running_loop().create_future())
        for i in range(100)
        for kind in ("j", "p")
    ]
    for frame in frames:
        await client.send_raw(frame)

    answered = await asyncio.wait_for(asyncio.gather(*replies), 20)
    assert [r["type"] for r in answered] == ["ok", "pong"] * 100


def test_binary_frame_gets_1003_even_when_sent_with_text_in_one_packet(
    broker: BrokerFactory,
) -> None:
    node: BrokerProcess = broker()
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
        sock.sendall(HANDSHAKE)
        assert b"101" in sock.recv(4096).split(b"\r\n")[0]
        ping = json.dumps({"type": "ping", "ref": 1}).encode()
        sock.sendall(_masked(0x2, b"\x00\x01") + _masked(0x1, ping))
        data = b""
        while b"\x88" not in data:
            chunk = sock.recv(4096)
            assert chunk, "closed without a close frame"
            data += chunk
        close = data[data.index(b"\x88") :]
        assert struct.unpack("!H", close[2:4])[0] == 1003
        assert b'"pong"' not in data  # nothing is handled after the binary frame


# --- disconnect log lines carry the close code actually sent or received --------


def disconnect_line(node: BrokerProcess, session: str) -> str:
    """The node's ``disconnect`` log line for ``session`` ('' until it is written)."""
    lines = [line for line in node.log().splitlines() if f"disconnect session={session}" in line]
    return lines[0] if lines else ""


async def test_disconnect_line_carries_the_code_the_node_sent(
    broker: BrokerFactory, wire: ClientFactory
) -> None:
    node = broker("--idle-timeout", "0.3")
    client = await wire(node.url)
    await client.wait_closed()  # closed by the node: no room joined
    await eventually(lambda: bool(disconnect_line(node, client.session)), timeout=5)
    assert "code=1008 reason='idle: no room joined'" in disconnect_line(node, client.session)


async def test_disconnect_line_carries_the_code_the_client_sent(
    broker: BrokerFactory, wire: ClientFactory
) -> None:
    node = broker()
    client = await wire(node.url)
    await client.ws.close(1000, "bye")
    await eventually(lambda: bool(disconnect_line(node, client.session)), timeout=5)
    assert "code=1000 reason='bye'" in disconnect_line(node, client.session)


async def test_disconnect_line_says_1006_when_the_tcp_connection_dropped(
    broker: BrokerFactory, wire: ClientFactory
) -> None:
    node = broker()
    client = await wire(node.url)
    client.ws.transport.abort()
    await eventually(lambda: bool(disconnect_line(node, client.session)), timeout=5)
    assert "code=1006 reason=''" in disconnect_line(node, client.session)
