"""Issue 11, defect 1: every byte the node writes for a client counts against
that client's limits. A client that floods pings (answered by pongs) or
JSON ``ping`` requests (answered by ``pong`` replies) and never reads is cut
off, and the node's memory stays bounded; the hard limit is exact."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator

import pytest

from tests.conftest import BrokerFactory
from tests.reliability.observe import rss_bytes
from tests.support.processes import BrokerProcess

HIGH_WATER = 256 * 1024
HARD_LIMIT = 4 * 1024 * 1024
RSS_BOUND = 8 * 1024 * 1024  # a few MiB: what the node buffers, plus noise
HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
# The frame of the report: a masked ping with 125 bytes of payload (mask 0).
PING_FRAME = bytes([0x89, 0xFD]) + b"\0\0\0\0" + b"q" * 125
BATCH = 1000
MAX_BATCHES = 1200  # 157 MB of pings: what grew the node by 242 MiB before


def masked_text(payload: bytes) -> bytes:
    """One masked text frame (mask 0) of up to 125 bytes."""
    assert len(payload) <= 125
    return bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    """Read until ``marker`` has arrived; returns everything read."""
    received = b""
    while marker not in received:
        chunk = sock.recv(4096)
        assert chunk, f"closed before {marker!r} arrived"
        received += chunk
    return received


@pytest.fixture
def node(broker: BrokerFactory) -> BrokerProcess:
    """A node with a small slow-consumer policy and a short close timeout."""
    return broker(
        "--slow-consumer-high-water", str(HIGH_WATER),
        "--slow-consumer-grace", "0.5",
        "--slow-consumer-hard-limit", str(HARD_LIMIT),
        "--close-timeout", "1",
    )  # fmt: skip


@pytest.fixture
def member(node: BrokerProcess) -> Iterator[socket.socket]:
    """A raw client that joined a room (so no idle timeout applies) and
    reads nothing more, with a small receive buffer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", node.port))
    try:
        sock.sendall(HANDSHAKE)
        assert read_until(sock, b"\r\n\r\n").startswith(b"HTTP/1.1 101")
        sock.sendall(masked_text(b'{"type":"join","room":"flood","ref":1}'))
        read_until(sock, b'"ok"')
        yield sock
    finally:
        sock.close()


def flood(sock: socket.socket, batch: bytes, pid: int) -> int:
    """Send ``batch`` up to :data:`MAX_BATCHES` times without reading, until the
    node cuts the connection; returns the node's peak RSS growth meanwhile."""
    baseline = peak = rss_bytes(pid)
    for sent in range(MAX_BATCHES):
        try:
            sock.sendall(batch)
        except (ConnectionResetError, BrokenPipeError):
            return peak - baseline
        if sent % 20 == 0:
            peak = max(peak, rss_bytes(pid))
    raise AssertionError(f"never cut off; RSS grew by {(peak - baseline) / 2**20:.1f} MiB")


def test_a_ping_flood_that_never_reads_is_cut_off_with_bounded_memory(
    node: BrokerProcess, member: socket.socket
) -> None:
    assert node.process is not None
    growth = flood(member, PING_FRAME * BATCH, node.process.pid)
    assert growth < RSS_BOUND, f"RSS grew by {growth / 2**20:.1f} MiB"
    assert "slow consumer" in node.log()


def test_a_json_ping_flood_is_cut_off_at_or_below_the_hard_limit(
    node: BrokerProcess, member: socket.socket
) -> None:
    assert node.process is not None
    requests = b"".join(
        masked_text(json.dumps({"type": "ping", "ref": n}).encode()) for n in range(BATCH)
    )
    growth = flood(member, requests, node.process.pid)
    assert growth < RSS_BOUND, f"RSS grew by {growth / 2**20:.1f} MiB"
    buffered = [int(b) for b in re.findall(r"slow consumer .* buffered=(\d+)", node.log())]
    assert buffered, node.log()
    assert max(buffered) <= HARD_LIMIT
