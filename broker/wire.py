"""One TCP connection's I/O: plain HTTP requests and WebSocket sessions.

A thin asyncio driver around websockets' Sans-I/O :class:`ServerProtocol`
(bytes in, events and bytes out), in place of websockets' own asyncio server,
for three reasons:

* memory: a connection is one small object with slots and the protocol
  state, with no task, queue or coroutine chain of its own (websockets'
  asyncio connection keeps three deques, the handshake headers and a handler
  task per connection: ~15 KiB instead of ~7);
* CPU: a frame is handled in ``data_received``, without waking a task;
* keepalive: one timer per node pings the connections that went quiet,
  instead of one task per connection.

The WebSocket rules (framing, masking, control frames, the closing handshake,
permessage-deflate) stay websockets'. This module adds what a Sans-I/O
protocol leaves to its driver: UTF-8 validation of text messages (RFC 6455
section 8.1), reassembly of fragmented messages under the size limit,
handshake and close timeouts, and plain-HTTP request bodies (``POST``).

Invariants:
    * ``ws`` is ``None`` until the request head was read; the application
      (:class:`WireApp`) sees ``opened`` at most once and ``closed`` exactly
      once after ``opened``.
    * Every byte the protocol wants to send is written at once, in order;
      ``SEND_EOF`` closes the transport.
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, cast

from websockets.datastructures import Headers
from websockets.extensions.base import ServerExtensionFactory
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import OPEN, SEND_EOF
from websockets.server import ServerProtocol

__all__ = ["HttpRequest", "Wire", "WireApp", "WireRegistry", "WireSettings", "http_response"]

log = logging.getLogger("broker.wire")

MAX_HEAD = 16 * 1024  # request line and headers


class HttpRequest:
    """A plain HTTP request with a body (websockets' parser refuses bodies)."""

    __slots__ = ("body", "headers", "method", "path")

    def __init__(self, method: str, path: str, headers: Headers, body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body


def http_response(status: int, body: bytes, content_type: str) -> Response:
    """A complete HTTP response that closes the connection."""
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


class WireApp(Protocol):
    """What a :class:`Wire` asks of the application."""

    def route(self, wire: Wire, request: Request) -> Response | None:
        """Answer a GET request, or return ``None`` to open a WebSocket."""

    def route_body(self, wire: Wire, request: HttpRequest) -> Response | Awaitable[Response]:
        """Answer a request that carries a body (``POST``): at once, or with an
        awaitable the wire owns (reading pauses; the handshake timeout bounds it)."""

    def opened(self, wire: Wire) -> None:
        """The WebSocket is open; from now on ``text`` may be called."""

    def text(self, wire: Wire, data: bytes) -> None:
        """A complete, UTF-8-valid text message arrived."""

    def closed(self, wire: Wire) -> None:
        """The connection is gone (after ``opened``)."""


class WireRegistry(Protocol):
    """Where live wires are kept (the listener)."""

    def add(self, wire: Wire) -> None:
        """A connection was made."""

    def discard(self, wire: Wire) -> None:
        """A connection was lost."""


class WireSettings:
    """Limits and timeouts every connection of a listener shares."""

    __slots__ = ("close_timeout", "extensions", "handshake_timeout", "max_size")

    def __init__(
        self,
        max_size: int,
        handshake_timeout: float,
        close_timeout: float,
        compression: bool,
    ) -> None:
        self.max_size = max_size
        self.handshake_timeout = handshake_timeout
        self.close_timeout = close_timeout
        self.extensions: Sequence[ServerExtensionFactory] | None = None
        if compression:
            from websockets.extensions.permessage_deflate import (
                enable_server_permessage_deflate,
            )

            self.extensions = enable_server_permessage_deflate(None)


class Wire(asyncio.Protocol):
    """One client TCP connection.

    Args:
        app: the application it reports to.
        settings: shared limits.
        registry: the set of live wires it adds itself to.
    """

    __slots__ = (
        "_answer",
        "_fragments",
        "_head",
        "_registry",
        "_timer",
        "app",
        "auth",
        "last_seen",
        "peer",
        "ping_sent",
        "request",
        "session",
        "settings",
        "transport",
        "ws",
    )

    def __init__(self, app: WireApp, settings: WireSettings, registry: WireRegistry) -> None:
        self.app = app
        self.settings = settings
        self._registry = registry
        self.transport: asyncio.Transport | None = None
        self.ws: ServerProtocol | None = None
        self.request: Request | None = None
        self.session: Any = None  # the application's per-connection state
        self.auth: Any = None  # what the route hook learned at the handshake (claims)
        self.peer = "?"
        self.last_seen = 0.0
        self.ping_sent = 0.0
        self._head: bytearray | None = bytearray()
        self._fragments: bytearray | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._answer: asyncio.Future[Response] | None = None

    # --- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the handshake timer."""
        # uvloop's transports do not inherit from asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._registry.add(self)
        loop = asyncio.get_running_loop()
        self.last_seen = loop.time()
        self._timer = loop.call_later(self.settings.handshake_timeout, self._handshake_expired)

    def data_received(self, data: bytes) -> None:
        """Feed the HTTP parser or the WebSocket protocol."""
        try:
            ws = self.ws
            if ws is not None and self._head is None:
                self.last_seen = asyncio.get_running_loop().time()
                self.ping_sent = 0.0
                ws.receive_data(data)
                self._events(ws)
            else:
                self._read_head(data)
        except Exception:
            # A bug must cost this connection only, never the node.
            log.exception("connection failed peer=%s", self.peer)
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell the application, once."""
        self._cancel_timer()
        if self._answer is not None:
            self._answer.cancel()
        self._registry.discard(self)
        # Nothing may be written after this: uvloop raises on a closed handle.
        self.transport = None
        if self.session is not None:
            self.app.closed(self)
            self.session = None

    def pause_writing(self) -> None:
        """The outbox's slow-consumer policy decides what a full buffer means."""

    def resume_writing(self) -> None:
        """The buffer drained below the low-water mark: tell the session."""
        if self.session is not None:
            self.session.outbox.drained()

    # --- the application's side ----------------------------------------------

    def is_open(self) -> bool:
        """Whether messages may still be sent."""
        return self.transport is not None and self.ws is not None and self.ws.state is OPEN

    def send_text(self, payload: bytes) -> None:
        """Frame (and compress, if negotiated) and write one text message now."""
        ws = self.ws
        if ws is not None and ws.state is OPEN:
            ws.send_text(payload)
            self._flush(ws)

    def compressed(self) -> bool:
        """Whether an extension (permessage-deflate) was negotiated."""
        return bool(self.ws is not None and self.ws.extensions)

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake; abort if it takes over ``close_timeout``."""
        ws = self.ws
        if ws is None or ws.state is not OPEN or self.transport is None:
            return
        ws.send_close(code, reason)
        self._flush(ws)
        self._arm_close_timer()

    def ping(self) -> None:
        """Send a keepalive ping."""
        ws = self.ws
        if ws is not None and ws.state is OPEN:
            self.ping_sent = asyncio.get_running_loop().time()
            ws.send_ping(b"")
            self._flush(ws)

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        """Stop reading from the socket (the application is busy)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read from the socket again."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    @property
    def close_code(self) -> int | None:
        """The close code received or sent, if any."""
        return None if self.ws is None else self.ws.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason received or sent, if any."""
        return None if self.ws is None else self.ws.close_reason

    # --- HTTP ----------------------------------------------------------------

    def _read_head(self, data: bytes) -> None:
        head = self._head
        assert head is not None
        head += data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > MAX_HEAD:
                self._respond(http_response(431, b"request header too large\n", "text/plain"))
            return
        method = bytes(head[: head.find(b" ")])
        if method == b"GET":
            self._handshake(bytes(head))
        else:
            self._read_body(head, end + 4)

    def _read_body(self, head: bytearray, body_start: int) -> None:
        try:
            request_line, *lines = head[: body_start - 4].decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            headers = Headers()
            for line in lines:
                name, value = line.split(":", 1)
                headers[name.strip()] = value.strip()
            length = int(headers.get("Content-Length", "0"))
        except (ValueError, LookupError):  # LookupError: Content-Length repeated
            self._respond(http_response(400, b"bad request\n", "text/plain"))
            return
        if length < 0 or length > self.settings.max_size:
            self._respond(http_response(413, b'{"error":"body too large"}', "application/json"))
            return
        if len(head) - body_start < length:
            if len(head) == body_start and headers.get("Expect", "").lower() == "100-continue":
                # The client waits for this before it sends the body (RFC 9110 10.1.1).
                assert self.transport is not None
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return  # wait for the rest of the body
        body = bytes(head[body_start : body_start + length])
        answer = self.app.route_body(self, HttpRequest(method, path, headers, body))
        if isinstance(answer, Response):
            self._respond(answer)
            return
        # One request per connection: read nothing more while it is answered.
        assert self.transport is not None
        self.transport.pause_reading()
        self._answer = asyncio.ensure_future(answer)
        self._answer.add_done_callback(self._answered)

    def _answered(self, answer: asyncio.Future[Response]) -> None:
        self._answer = None
        if answer.cancelled() or self.transport is None or self.transport.is_closing():
            return
        if answer.exception() is not None:
            log.error("POST handler failed peer=%s", self.peer, exc_info=answer.exception())
            self._respond(http_response(500, b"internal error\n", "text/plain"))
        else:
            self._respond(answer.result())

    def _respond(self, response: Response) -> None:
        self._head = None
        self._cancel_timer()
        assert self.transport is not None
        self.transport.write(response.serialize())
        self.transport.close()

    # --- WebSocket -----------------------------------------------------------

    def _handshake(self, head: bytes) -> None:
        ws = ServerProtocol(extensions=self.settings.extensions, max_size=self.settings.max_size)
        self.ws = ws
        ws.receive_data(head)
        events = ws.events_received()
        if not events or not isinstance(events[0], Request):
            self._head = None
            self._flush(ws)  # the protocol wrote its own 400
            return
        request = events[0]
        response = self.app.route(self, request)
        if response is None:
            response = ws.accept(request)
        ws.send_response(response)
        self._head = None
        self._cancel_timer()
        self._flush(ws)
        if ws.state is OPEN:
            self.request = request
            self.app.opened(self)

    def _events(self, ws: ServerProtocol) -> None:
        for event in ws.events_received():
            if not isinstance(event, Frame):
                continue
            if ws.state is not OPEN:
                break  # failed (1007, 1009) or closing: nothing more is handled
            opcode = event.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.CONT:
                data = self._reassemble(ws, bytes(event.data), event.fin)
                if data is not None and self.session is not None:
                    self.app.text(self, data)
            elif opcode is Opcode.BINARY:
                self.close(CloseCode.UNSUPPORTED_DATA, "binary frames are not supported")
                break
        self._flush(ws)

    def _reassemble(self, ws: ServerProtocol, data: bytes, fin: bool) -> bytes | None:
        fragments = self._fragments
        if fin and fragments is None:
            message = data
        else:
            # A bytearray: a flood of tiny continuation frames costs O(1) each.
            if fragments is None:
                fragments = self._fragments = bytearray()
            fragments += data
            if len(fragments) > self.settings.max_size:
                self._fragments = None
                ws.fail(CloseCode.MESSAGE_TOO_BIG, "message too big")
                return None
            if not fin:
                return None
            message = bytes(fragments)
            self._fragments = None
        # RFC 6455 section 8.1: a text message must be valid UTF-8.
        if not message.isascii():
            try:
                message.decode()
            except UnicodeDecodeError:
                ws.fail(CloseCode.INVALID_DATA, "invalid UTF-8")
                return None
        return message

    def _flush(self, ws: ServerProtocol) -> None:
        transport = self.transport
        if transport is None:
            return
        for data in ws.data_to_send():
            if data is SEND_EOF or not data:
                # close() waits for the buffer to drain: a peer that does not
                # read would hold the connection forever without this timer.
                transport.close()
                if self._timer is None:
                    self._arm_close_timer()
                return
            transport.write(data)

    # --- timers --------------------------------------------------------------

    def _handshake_expired(self) -> None:
        self._timer = None
        log.info("handshake timeout peer=%s", self.peer)
        self.abort()

    def _arm_close_timer(self) -> None:
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(self.settings.close_timeout, self.abort)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
