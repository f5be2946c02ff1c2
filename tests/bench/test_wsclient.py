"""The load generator's WebSocket client: handshake, framing, control frames
(RFC 6455), fed bytes the way a socket would deliver them."""

from __future__ import annotations

import base64
import hashlib
import re
import struct

import pytest

from broker.bench.wsclient import HandshakeError, WsClient
from broker.frames import text_frame
from protocol import CloseCode

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class FakeTransport:
    """Records writes and closes instead of touching a socket."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


class Harness:
    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.closes: list[int] = []
        self.client = WsClient("127.0.0.1:1", "/ws", self.batches.append, self.closes.append)
        self.transport = FakeTransport()
        self.client.connection_made(self.transport)  # type: ignore[arg-type]
        request = bytes(self.transport.written).decode()
        match = re.search(r"Sec-WebSocket-Key: (\S+)", request)
        assert match is not None
        self.key = match.group(1)
        self.transport.written.clear()

    def response(self, accept: str | None = None, extra: str = "") -> bytes:
        if accept is None:
            accept = base64.b64encode(hashlib.sha1((self.key + GUID).encode()).digest()).decode()
        return (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
        ).encode()

    def messages(self) -> list[bytes]:
        return [m for batch in self.batches for m in batch]


def unmask_client_frame(frame: bytes) -> tuple[int, bytes]:
    """Opcode and payload of one masked client frame (RFC 6455, section 5.3)."""
    assert frame[1] & 0x80, "client frames must be masked"
    length, offset = frame[1] & 0x7F, 2
    if length == 126:
        (length,) = struct.unpack("!H", frame[2:4])
        offset = 4
    mask, payload = frame[offset : offset + 4], frame[offset + 4 : offset + 4 + length]
    return frame[0] & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_the_handshake_asks_for_an_upgrade_without_extensions() -> None:
    client = WsClient("example:80", "/ws", lambda _: None, lambda _: None)
    transport = FakeTransport()
    client.connection_made(transport)  # type: ignore[arg-type]

    request = bytes(transport.written).decode()

    assert request.startswith("GET /ws HTTP/1.1\r\nHost: example:80\r\n")
    assert "Upgrade: websocket\r\n" in request
    assert "Sec-WebSocket-Version: 13\r\n" in request
    assert "Extensions" not in request


async def test_frames_split_anywhere_arrive_whole_and_in_order() -> None:
    h = Harness()
    payloads = [b'{"n":%d}' % i + b"x" * (i * 37) for i in range(40)]
    stream = h.response() + b"".join(text_frame(p) for p in payloads)

    for start in range(0, len(stream), 97):
        h.client.data_received(stream[start : start + 97])

    assert h.messages() == payloads
    await h.client.wait_open()


async def test_a_welcome_in_the_same_packet_as_the_handshake_is_not_lost() -> None:
    h = Harness()

    h.client.data_received(h.response() + text_frame(b'{"type":"welcome"}'))

    assert h.messages() == [b'{"type":"welcome"}']


async def test_large_frames_use_the_64_bit_length() -> None:
    h = Harness()
    big = b"y" * 70_000

    h.client.data_received(h.response() + text_frame(big))

    assert h.messages() == [big]


async def test_a_fragmented_message_is_reassembled() -> None:
    h = Harness()
    first = bytes((0x01, 3)) + b"abc"  # text, not FIN
    last = bytes((0x80, 3)) + b"def"  # continuation, FIN

    h.client.data_received(h.response() + first + last)

    assert h.messages() == [b"abcdef"]


async def test_ping_is_answered_with_a_masked_pong_between_messages() -> None:
    h = Harness()
    ping = bytes((0x89, 4)) + b"beat"

    h.client.data_received(h.response() + text_frame(b"1") + ping + text_frame(b"2"))

    assert h.batches == [[b"1"], [b"2"]]
    assert unmask_client_frame(bytes(h.transport.written)) == (0xA, b"beat")


async def test_text_is_sent_masked() -> None:
    h = Harness()
    h.client.data_received(h.response())

    h.client.send_text(b'{"type":"ping"}' * 10)

    assert unmask_client_frame(bytes(h.transport.written)) == (0x1, b'{"type":"ping"}' * 10)


async def test_a_close_frame_is_echoed_and_its_code_reported() -> None:
    h = Harness()

    h.client.data_received(h.response() + bytes((0x88, 2)) + struct.pack("!H", 1001))
    h.client.connection_lost(None)

    assert unmask_client_frame(bytes(h.transport.written))[0] == 0x8
    assert h.transport.closed
    assert h.closes == [1001]


async def test_a_close_frame_without_a_code_reports_no_status_received() -> None:
    h = Harness()

    h.client.data_received(h.response() + bytes((0x88, 0)))
    h.client.connection_lost(None)

    assert h.closes == [1005]  # RFC 6455, section 7.1.5


async def test_a_connection_dropped_without_a_close_frame_reports_1006() -> None:
    h = Harness()

    h.client.data_received(h.response())
    h.client.connection_lost(ConnectionResetError())

    assert h.closes == [CloseCode.ABNORMAL_CLOSURE]


async def test_a_masked_server_frame_is_a_protocol_error() -> None:
    h = Harness()

    h.client.data_received(h.response() + bytes((0x81, 0x80 | 1)) + b"\0\0\0\0" + b"x")

    assert h.client.close_code == 1002
    assert h.messages() == []


async def test_a_wrong_accept_key_fails_the_handshake() -> None:
    h = Harness()

    h.client.data_received(h.response(accept="bm9wZQ=="))

    with pytest.raises(HandshakeError, match="Accept"):
        await h.client.wait_open()
    assert h.transport.closed


async def test_a_refused_upgrade_fails_the_handshake() -> None:
    h = Harness()

    h.client.data_received(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    with pytest.raises(HandshakeError, match="404"):
        await h.client.wait_open()


async def test_an_extension_nobody_offered_fails_the_handshake() -> None:
    h = Harness()

    h.client.data_received(h.response(extra="Sec-WebSocket-Extensions: permessage-deflate\r\n"))

    with pytest.raises(HandshakeError, match="extension"):
        await h.client.wait_open()
