"""A lean WebSocket client for the load generator: an asyncio Protocol that
parses server frames itself and hands each text payload to a callback.

Why not the ``websockets`` client: its per-message path (parser generator,
message assembler, queue, ``await recv()``) costs several times more CPU than
the broker spends per delivery, so a benchmark built on it would measure
itself. Here a whole ``data_received`` chunk is cut into frames in one loop
and nothing is awaited per message.

Scope (RFC 6455): client handshake (section 4.1), unmasked server frames
(5.1), text, continuation, ping (answered with pong, 5.5.2), pong and close;
client frames are masked with a fresh random key (5.3). No extensions: the
handshake offers none, so the server must not use any.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import struct
from collections.abc import Callable
from typing import Final, cast
from urllib.parse import urlsplit

from protocol import CloseCode

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - the C extension is missing on this platform
    from websockets.utils import apply_mask

__all__ = ["HandshakeError", "WsClient", "open_client"]

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_MAX_HEADERS = 16 * 1024
# Linux <netinet/in.h>; the socket module does not name it.
_IP_BIND_ADDRESS_NO_PORT: Final = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
# RFC 6455, section 7.1.5: a close frame without a code is reported as 1005.
# Not in protocol.CloseCode: no broker sends it, only a peer's empty close frame.
_NO_STATUS_RECEIVED: Final = 1005


class HandshakeError(Exception):
    """The server did not accept the WebSocket upgrade."""


class WsClient(asyncio.Protocol):
    """One client connection; ``on_texts`` receives the payloads of the text
    messages that arrived together, in order, as one list.

    ``on_close`` is called once when the connection ends, with the close code
    the server sent (:attr:`~protocol.CloseCode.ABNORMAL_CLOSURE`, 1006, when
    the TCP connection just dropped).
    """

    def __init__(
        self,
        host: str,
        path: str,
        on_texts: Callable[[list[bytes]], None],
        on_close: Callable[[int], None],
    ) -> None:
        self._host = host
        self._path = path
        self.on_texts = on_texts
        self.on_close = on_close
        self._key = base64.b64encode(os.urandom(16)).decode()
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._upgraded = False
        self._handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._transport: asyncio.Transport | None = None
        self.close_code: int | None = None

    # --- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the opening handshake (RFC 6455, section 4.1)."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        request = (
            f"GET {self._path} HTTP/1.1\r\n"
            f"Host: {self._host}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self._key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "\r\n"
        )
        transport.write(request.encode())

    def data_received(self, data: bytes) -> None:
        """Dispatch every complete frame; keep the incomplete rest for later."""
        if self._buffer or not self._upgraded:
            self._buffer += data
            if not self._upgraded and not self._read_handshake():
                return
            data = bytes(self._buffer)
            self._buffer.clear()
        used = self._read_frames(data)
        if used < len(data):
            self._buffer += memoryview(data)[used:]

    def connection_lost(self, exc: Exception | None) -> None:
        """Report the end of the connection once."""
        if not self._handshake.done():
            self._handshake.set_exception(
                HandshakeError(f"connection lost during handshake: {exc}")
            )
        if self.close_code is None:
            self.close_code = CloseCode.ABNORMAL_CLOSURE
        self.on_close(self.close_code)

    # --- API ----------------------------------------------------------------

    async def wait_open(self) -> None:
        """Wait until the server has accepted the upgrade."""
        await self._handshake

    def send_text(self, payload: bytes) -> None:
        """Send one text frame, masked as a client must (RFC 6455, section 5.3)."""
        if self._transport is None or self._transport.is_closing():
            return
        self._transport.write(_client_frame(_OP_TEXT, payload))

    def close(self, code: int = CloseCode.NORMAL_CLOSURE) -> None:
        """Send a close frame and drop the connection without waiting for the echo."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(_client_frame(_OP_CLOSE, struct.pack("!H", code)))
        transport.close()

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        if self._transport is not None:
            self._transport.abort()

    # --- parsing ------------------------------------------------------------

    def _read_handshake(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_HEADERS:
                self._fail_handshake("response headers too long")
            return False
        head = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[: end + 4]
        lines = head.split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            self._fail_handshake(f"server answered {lines[0]!r}")
            return False
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        expected = base64.b64encode(hashlib.sha1((self._key + _GUID).encode()).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            self._fail_handshake("bad Sec-WebSocket-Accept")
            return False
        if headers.get("sec-websocket-extensions"):
            self._fail_handshake("server enabled an extension nobody offered")
            return False
        self._upgraded = True
        self._handshake.set_result(None)
        return True

    def _fail_handshake(self, reason: str) -> None:
        if not self._handshake.done():
            self._handshake.set_exception(HandshakeError(reason))
        self.abort()

    def _read_frames(self, data: bytes) -> int:
        """Dispatch the complete frames at the start of ``data``; return the bytes used.

        Hot path: unfragmented text frames are collected and handed over as
        one batch per chunk; any other frame first flushes the batch, so the
        order of messages and control frames is kept.
        """
        size = len(data)
        offset = 0
        batch: list[bytes] = []
        while size - offset >= 2:
            first = data[offset]
            second = data[offset + 1]
            length = second & 0x7F
            start = offset + 2
            if length == 126:
                if size - start < 2:
                    break
                length = (data[start] << 8) | data[start + 1]
                start += 2
            elif length == 127:
                if size - start < 8:
                    break
                length = int.from_bytes(data[start : start + 8], "big")
                start += 8
            end = start + length
            if end > size:
                break
            offset = end
            if first == 0x80 | _OP_TEXT and not second & 0x80:
                batch.append(data[start:end])
                continue
            if batch:
                self.on_texts(batch)
                batch = []
            if second & 0x80:
                self._protocol_error("the server masked a frame")  # RFC 6455, section 5.1
                return size
            self._frame(first & 0x80, first & 0x0F, data[start:end])
        if batch:
            self.on_texts(batch)
        return offset

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode in (_OP_TEXT, _OP_CONT):
            self._fragments.append(payload)
            if fin:
                message, self._fragments = b"".join(self._fragments), []
                self.on_texts([message])
        elif opcode == _OP_PING:
            if self._transport is not None and not self._transport.is_closing():
                self._transport.write(_client_frame(_OP_PONG, payload))
        elif opcode == _OP_CLOSE:
            self.close_code = (
                struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else _NO_STATUS_RECEIVED
            )
            self.close()
        elif opcode == _OP_BINARY:
            self._protocol_error("the server sent a binary frame")

    def _protocol_error(self, reason: str) -> None:
        self.close_code = CloseCode.PROTOCOL_ERROR
        self.close(CloseCode.PROTOCOL_ERROR)


def _client_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return header + mask + apply_mask(payload, mask)


async def open_client(
    url: str,
    on_texts: Callable[[list[bytes]], None],
    on_close: Callable[[int], None],
    source: str | None = None,
) -> WsClient:
    """Connect to ``ws://host:port/path`` and complete the handshake.

    ``source`` (a local address such as ``127.0.0.2``) is where the
    connection comes from; None lets the kernel choose. The caller bounds it
    with a timeout.

    Raises:
        HandshakeError: the server refused the upgrade.
        OSError: the TCP connection failed.
    """
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname is None:
        raise ValueError(f"not a ws:// URL: {url!r}")
    port = parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc
    loop = asyncio.get_running_loop()

    def factory() -> WsClient:
        return WsClient(host_header, path, on_texts, on_close)

    if source is None:
        _, client = await loop.create_connection(factory, parts.hostname, port)
    else:
        sock = await _connected_from(source, parts.hostname, port)
        _, client = await loop.create_connection(factory, sock=sock)
    try:
        await client.wait_open()
    except BaseException:
        client.abort()
        raise
    return client


async def _connected_from(source: str, host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``source`` and connected to ``host:port``.

    IP_BIND_ADDRESS_NO_PORT: without it, ``bind`` picks the local port at
    once, unique for ``source`` across every destination, so one source
    address would give at most one ephemeral range of connections in all;
    with it the port is picked at ``connect``, per destination.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        await loop.sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock
