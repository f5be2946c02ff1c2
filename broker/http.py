"""One plain HTTP request and its answer, parsed by h11 (a Sans-I/O HTTP/1.1
state machine: bytes in, ``Request``/``Data``/``EndOfMessage`` events out).

h11 enforces what a hand-written parser got wrong (issue 11): ``Content-Length``
is digits only (RFC 9110, 8.6), ``Transfer-Encoding: chunked`` bodies are
decoded (RFC 9112, 7.1) and other codings refused with 501, an HTTP/1.1
request needs ``Host`` (RFC 9112, 3.2). This module adds the node's policy:
a body is read incrementally and never buffered past ``max_body`` (413),
``Expect: 100-continue`` is answered (RFC 9110, 10.1.1), a ``HEAD`` gets the
``GET`` answer without its body (RFC 9110, 9.3.2), and every error has the one
JSON body. One request per connection: every answer closes it.

Invariants:
    * At most one answer is written; the transport is closed after it.
    * While the application computes an answer, the socket is not read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Protocol
from urllib.parse import urlsplit

import h11

from broker.http_answer import HttpAnswer, error_answer
from broker.link import Registry
from protocol import ErrorCode, HttpErrorCode

__all__ = ["MAX_HEAD", "BodyReader", "HttpApp", "HttpExchange", "RequestHead"]

log = logging.getLogger("broker.http")

MAX_HEAD: Final = 16 * 1024
"""Bytes of request line and headers a node reads, blank line included (the
edge enforces it on every request; h11 is given the same bound)."""

BodyReader = Callable[[bytes], Awaitable[HttpAnswer]]
"""Answers a request once its whole body (at most ``max_body`` bytes) was read."""

_ERROR_CODES: Final = {
    413: HttpErrorCode.BODY_TOO_LARGE,
    431: HttpErrorCode.HEADER_TOO_LARGE,
    501: HttpErrorCode.NOT_IMPLEMENTED,
}
INTERNAL: Final = error_answer(500, ErrorCode.INTERNAL, "internal error")


class RequestHead:
    """A request's method, target and headers (read access like websockets'
    ``Headers``: :meth:`get_all`).

    Args:
        method: the method, e.g. ``GET``.
        target: the request target, e.g. ``/publish?x=1``.
        headers: ``(name, value)`` pairs as h11 gives them (names lowercased).
    """

    __slots__ = ("_headers", "method", "path", "target")

    def __init__(self, method: str, target: str, headers: Sequence[tuple[bytes, bytes]]) -> None:
        self.method = method
        self.target = target
        self.path = urlsplit(target).path
        self._headers = headers

    def get_all(self, key: str) -> list[str]:
        """Every value of header ``key``, case-insensitively; ``[]`` if absent."""
        name = key.lower().encode("latin-1")
        return [value.decode("latin-1") for field, value in self._headers if field == name]


class HttpApp(Protocol):
    """What the plain-HTTP side asks of the application."""

    def route(self, request: RequestHead) -> HttpAnswer | BodyReader:
        """Answer at once (``GET``, ``HEAD``, errors), or return the reader
        that answers once the body is read (``POST``)."""
        ...


def too_large(max_body: int) -> HttpAnswer:
    """The 413 for a body over ``max_body`` bytes."""
    return error_answer(413, HttpErrorCode.BODY_TOO_LARGE, f"the body is over {max_body} bytes")


def protocol_error(exc: h11.RemoteProtocolError) -> HttpAnswer:
    """The answer to a request h11 refused, with the status it suggests."""
    status = exc.error_status_hint
    code = _ERROR_CODES.get(status, HttpErrorCode.BAD_REQUEST)
    return error_answer(status, code, str(exc) or "bad request")


class HttpExchange(asyncio.Protocol):
    """The transport's protocol for one plain HTTP request.

    Args:
        app: the node's endpoints.
        registry: the set of live connections.
        transport: the connection, handed over by the edge.
        peer: ``host:port`` of the client, for logs.
        max_body: the largest body read, in bytes.
        deadline: loop time by which the request must be read and answered.
    """

    __slots__ = (
        "_app",
        "_body",
        "_conn",
        "_head_only",
        "_max_body",
        "_reader",
        "_registry",
        "_task",
        "_timer",
        "peer",
        "transport",
    )

    def __init__(
        self,
        app: HttpApp,
        registry: Registry,
        transport: asyncio.Transport,
        peer: str,
        max_body: int,
        deadline: float,
    ) -> None:
        self._app = app
        self._registry = registry
        self.transport: asyncio.Transport | None = transport
        self.peer = peer
        self._max_body = max_body
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self._head_only = False
        self._reader: BodyReader | None = None
        self._body = bytearray()
        self._task: asyncio.Task[HttpAnswer] | None = None
        registry.add(self)
        transport.set_protocol(self)
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_at(
            deadline, self._expired
        )

    # --- asyncio.Protocol ----------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Feed the bytes the edge already read."""
        self.data_received(data)

    def data_received(self, data: bytes) -> None:
        """Feed h11 and act on its events."""
        try:
            self._conn.receive_data(data)
            self._events()
        except Exception:
            # A bug must cost this connection only, never the node.
            log.exception("HTTP request failed peer=%s", self.peer)
            self.abort()

    def eof_received(self) -> bool | None:
        """The client stopped sending: a request cut short is dropped."""
        return None  # asyncio closes the transport

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection; an answer still being computed is cancelled."""
        self._cancel_timer()
        if self._task is not None:
            self._task.cancel()
        self._registry.discard(self)
        self.transport = None

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        if self.transport is not None:
            self.transport.abort()

    # --- events --------------------------------------------------------------

    def _events(self) -> None:
        while True:
            if self.transport is None or self.transport.is_closing():
                return
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._answer(protocol_error(exc))
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._on_request(event)
            elif isinstance(event, h11.Data):
                self._on_data(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._on_end()
                return
            else:  # ConnectionClosed: the client went away mid-request
                self.abort()
                return

    def _on_request(self, event: h11.Request) -> None:
        method = event.method.decode("ascii")
        self._head_only = method == "HEAD"
        head = RequestHead(method, event.target.decode("ascii", "replace"), event.headers)
        verdict = self._app.route(head)
        if isinstance(verdict, HttpAnswer):
            self._answer(verdict)
            return
        declared = head.get_all("content-length")
        # h11 checked the value: digits only (RFC 9110, 8.6).
        if declared and declared[0].isdigit() and int(declared[0]) > self._max_body:
            self._answer(too_large(self._max_body))
            return
        self._reader = verdict
        if self._conn.they_are_waiting_for_100_continue:
            # The client waits for this before it sends the body (RFC 9110, 10.1.1).
            self._write(self._conn.send(h11.InformationalResponse(status_code=100, headers=[])))

    def _on_data(self, data: bytes) -> None:
        if self._reader is None:
            return
        body = self._body
        if len(body) + len(data) > self._max_body:
            self._answer(too_large(self._max_body))
            return
        body += data

    def _on_end(self) -> None:
        reader, self._reader = self._reader, None
        if reader is None or self.transport is None:
            return
        body, self._body = bytes(self._body), bytearray()
        # One request per connection: read nothing more while it is answered.
        self.transport.pause_reading()
        self._task = asyncio.ensure_future(reader(body))
        self._task.add_done_callback(self._answered)

    def _answered(self, task: asyncio.Task[HttpAnswer]) -> None:
        self._task = None
        if task.cancelled() or self.transport is None or self.transport.is_closing():
            return
        error = task.exception()
        if error is not None:
            log.error("HTTP handler failed peer=%s", self.peer, exc_info=error)
            self._answer(INTERNAL)
        else:
            self._answer(task.result())

    # --- writing -------------------------------------------------------------

    def _answer(self, answer: HttpAnswer) -> None:
        self._reader = None
        self._cancel_timer()
        self._write(answer.serialize(head_only=self._head_only))
        if self.transport is not None:
            self.transport.close()

    def _write(self, data: bytes | None) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _expired(self) -> None:
        self._timer = None
        log.info("HTTP request timeout peer=%s", self.peer)
        self.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
