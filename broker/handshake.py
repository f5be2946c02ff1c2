"""The WebSocket opening handshake (RFC 6455, section 4.2), on websockets'
Sans-I/O :class:`ServerProtocol`, fed exactly the request head.

Checks made here, before the node's own (draining, capacity, origin, token):
one ``Host`` header (RFC 9112, section 3.2: 400 without it) and
``Sec-WebSocket-Version: 13`` (RFC 6455, section 4.4: 426 naming the version
this server speaks). Every refusal has the one JSON error body. The parsed
request is dropped once the handshake is answered; the application keeps what
it needs (the verified identity) in the opener it returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, Protocol

from websockets.datastructures import Headers
from websockets.http11 import Request
from websockets.server import ServerProtocol

from broker.http_answer import HttpAnswer, error_answer
from broker.link import Registry, WireSettings
from broker.wire import Wire, WireHandler
from protocol import HttpErrorCode

__all__ = ["Opener", "UpgradeApp", "judge", "upgrade"]

Opener = Callable[[Wire], WireHandler]
"""Creates the application's handler for a wire that just opened."""

NO_HOST: Final = error_answer(
    400, HttpErrorCode.BAD_REQUEST, "a request needs exactly one Host header (RFC 9112, 3.2)"
)
# RFC 6455, section 4.4: the versions this server understands go with the error;
# RFC 9110, section 15.5.22: a 426 names the protocol to upgrade to.
BAD_VERSION: Final = error_answer(
    426,
    HttpErrorCode.BAD_REQUEST,
    "unsupported WebSocket version: this server speaks version 13",
    headers=(("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")),
)


class UpgradeApp(Protocol):
    """What the handshake asks of the application."""

    def admit(self, target: str, headers: Headers) -> HttpAnswer | Opener:
        """Refuse a handshake (draining, full, origin, token) with an answer,
        or return what opens the session once the WebSocket is open."""
        ...


def judge(app: UpgradeApp, ws: ServerProtocol) -> HttpAnswer | Opener:
    """Answer the request ``ws`` parsed: a refusal, or the opener (then the
    101 response was given to ``ws`` and the WebSocket is OPEN)."""
    events = ws.events_received()
    if not events or not isinstance(events[0], Request):
        return error_answer(400, HttpErrorCode.BAD_REQUEST, f"bad handshake: {ws.handshake_exc}")
    request = events[0]
    hosts = request.headers.get_all("Host")
    if len(hosts) != 1 or not hosts[0].strip():
        return NO_HOST
    if request.headers.get_all("Sec-WebSocket-Version") != ["13"]:
        return BAD_VERSION
    verdict = app.admit(request.path, request.headers)
    if isinstance(verdict, HttpAnswer):
        return verdict
    response = ws.accept(request)
    if response.status_code != 101:
        # websockets explains its refusal in a text body: keep the words, not the shape.
        message = response.body.decode("utf-8", "replace").strip() or "bad handshake"
        return error_answer(response.status_code, HttpErrorCode.BAD_REQUEST, message)
    ws.send_response(response)
    # websockets' parser generator keeps the parsed request in a local for the
    # connection's whole life; its headers were about 2.6 KiB of every idle
    # connection. Everything needed from them is in the verdict by now.
    request.headers.clear()
    return verdict


def upgrade(
    app: UpgradeApp,
    settings: WireSettings,
    registry: Registry,
    transport: asyncio.Transport,
    peer: str,
    data: bytes,
    head_size: int,
) -> Wire | None:
    """Run the handshake on the head ``data[:head_size]``; on success hand the
    connection to a new :class:`~broker.wire.Wire` and feed it the rest.

    Returns:
        The wire, or ``None`` if the handshake was refused (answered and closed).
    """
    ws = ServerProtocol(extensions=settings.extensions, max_size=settings.max_size)
    ws.receive_data(data[:head_size])
    verdict = judge(app, ws)
    if isinstance(verdict, HttpAnswer):
        transport.write(verdict.serialize())
        transport.close()
        return None
    wire = Wire(ws, transport, settings, registry, peer)
    wire.start(verdict, data[head_size:])
    return wire
