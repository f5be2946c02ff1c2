"""The first look at every connection: read the request head, refuse what is
not HTTP, and hand the connection to the WebSocket handshake or to the
plain-HTTP handler.

One cheap look, one limit: the head (request line and headers, up to the
blank line) is accumulated under :data:`MAX_HEAD` bytes however the bytes are
segmented; a head that arrives in one read meets the same limit (issue 11,
defect 2). Bytes that cannot begin an HTTP/1.x request (a TLS ClientHello,
binary garbage, a malformed request line) get 400 at once, not after the
handshake timeout. Routing needs only the method, the path and whether an
``Upgrade`` header names ``websocket``; the request itself is parsed once, by
websockets (upgrades) or by h11 (everything else).

Invariants:
    * An :class:`Edge` answers or hands over at most once; after that it holds
      no bytes and is no longer the transport's protocol.
    * Nothing of the head outlives the handover but the bytes given to the
      next protocol.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Final, Protocol, cast
from urllib.parse import urlsplit

from broker.handshake import UpgradeApp, upgrade
from broker.http import MAX_HEAD, HttpApp, HttpExchange
from broker.http_answer import HttpAnswer, error_answer
from broker.link import Registry, WireSettings
from protocol import HttpErrorCode

__all__ = ["MAX_HEAD", "Edge", "EdgeApp", "Head", "read_head"]

log = logging.getLogger("broker.edge")

MAX_METHOD: Final = 20

# RFC 9112, section 3: request-line = method SP request-target SP HTTP-version.
_REQUEST_LINE: Final = re.compile(rb"([A-Z]{1,20}) ([\x21-\x7e]+) HTTP/1\.[01]")
_VERSIONS: Final = (b"HTTP/1.1", b"HTTP/1.0")
_END: Final = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Head:
    """What routing needs of a complete request head.

    Attributes:
        size: bytes of the head, blank line included.
        method: the request method.
        path: the path of the request target (no query).
        upgrade: whether an ``Upgrade`` header names ``websocket``.
    """

    size: int
    method: str
    path: str
    upgrade: bool


def _bad(message: str) -> HttpAnswer:
    return error_answer(400, HttpErrorCode.BAD_REQUEST, message)


TOO_LARGE: Final = error_answer(
    431, HttpErrorCode.HEADER_TOO_LARGE, f"the request head is over {MAX_HEAD} bytes"
)
NOT_HTTP: Final = _bad("not an HTTP/1.1 request")


def _plausible_start(line: bytes) -> bool:
    """Whether ``line`` (no line end yet) can still become a request line."""
    method, space, rest = line.partition(b" ")
    if len(method) > MAX_METHOD or (method and not (method.isalpha() and method.isupper())):
        return False
    if not space:
        return True
    target, space, version = rest.partition(b" ")
    if not method or any(byte < 0x21 or byte > 0x7E for byte in target):
        return False
    if not space:
        return True
    return bool(target) and any(full.startswith(version) for full in _VERSIONS)


def _upgrades_to_websocket(lines: list[bytes]) -> bool:
    for line in lines:
        name, _, value = line.partition(b":")
        if name.lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


def read_head(buffer: bytes | bytearray) -> Head | HttpAnswer | None:
    """Judge the bytes read so far.

    Returns:
        The complete :class:`Head`; the answer to give (400 for bytes that are
        not HTTP, 431 over :data:`MAX_HEAD`); or ``None``: read more.
    """
    line_end = buffer.find(b"\r\n")
    if line_end < 0:
        if not _plausible_start(bytes(buffer[: MAX_HEAD + 1]).rstrip(b"\r")):
            return NOT_HTTP
        return TOO_LARGE if len(buffer) > MAX_HEAD else None
    match = _REQUEST_LINE.fullmatch(buffer, 0, line_end)
    if match is None:
        return NOT_HTTP
    end = buffer.find(_END, line_end)
    if end < 0:
        return TOO_LARGE if len(buffer) > MAX_HEAD else None
    size = end + len(_END)
    if size > MAX_HEAD:
        return TOO_LARGE
    lines = bytes(buffer[line_end + 2 : end]).split(b"\r\n")
    target = match.group(2).decode("ascii")
    return Head(
        size, match.group(1).decode("ascii"), urlsplit(target).path, _upgrades_to_websocket(lines)
    )


class EdgeApp(UpgradeApp, HttpApp, Protocol):
    """What the node offers a connection: the WebSocket and the HTTP endpoints."""


class Edge(asyncio.Protocol):
    """The protocol every accepted connection starts with.

    Args:
        app: the node's endpoints.
        settings: shared limits (the WebSocket path, the handshake timeout).
        registry: the set of live connections (the listener).
    """

    __slots__ = ("_buffer", "_registry", "_timer", "app", "peer", "settings", "transport")

    def __init__(self, app: EdgeApp, settings: WireSettings, registry: Registry) -> None:
        self.app = app
        self.settings = settings
        self._registry = registry
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self._buffer = bytearray()
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the handshake timer."""
        # uvloop's transports do not inherit from asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._registry.add(self)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.settings.handshake_timeout, self._expired)

    def data_received(self, data: bytes) -> None:
        """Read until the head is complete, then answer or hand over."""
        buffer = self._buffer
        buffer += data
        try:
            verdict = read_head(buffer)
            if verdict is None:
                return
            if isinstance(verdict, HttpAnswer):
                self._answer(verdict)
            else:
                self._route(verdict)
        except Exception:
            # A bug must cost this connection only, never the node.
            log.exception("connection failed peer=%s", self.peer)
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection."""
        self._stop()
        self._registry.discard(self)
        self.transport = None

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        if self.transport is not None:
            self.transport.abort()

    def _route(self, head: Head) -> None:
        transport = self.transport
        assert transport is not None
        data = bytes(self._buffer)
        deadline = self._stop()
        try:
            if head.upgrade and head.method == "GET" and head.path == self.settings.ws_path:
                settings, registry = self.settings, self._registry
                upgrade(self.app, settings, registry, transport, self.peer, data, head.size)
            else:
                max_body = self.settings.max_size
                exchange = HttpExchange(
                    self.app, self._registry, transport, self.peer, max_body, deadline
                )
                exchange.receive(data)
        finally:
            # The next stage registered itself before this one leaves: a drain
            # never sees the set empty in the middle of a handover.
            if transport.get_protocol() is not self:
                self._registry.discard(self)

    def _answer(self, answer: HttpAnswer) -> None:
        transport = self.transport
        assert transport is not None
        self._stop()
        transport.write(answer.serialize())
        transport.close()

    def _stop(self) -> float:
        """Cancel the timer and drop the head; returns the handshake deadline."""
        deadline = asyncio.get_running_loop().time()
        if self._timer is not None:
            deadline = self._timer.when()
            self._timer.cancel()
            self._timer = None
        self._buffer = bytearray()
        return deadline

    def _expired(self) -> None:
        self._timer = None
        log.info("handshake timeout peer=%s", self.peer)
        self.abort()
