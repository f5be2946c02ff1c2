"""Opening one WebSocket connection to a broker and reading its ``welcome``.

The only module of the SDK that opens sockets; the supervisor decides when.
A handshake refused for who the client is (HTTP 401 or 403) becomes a
:class:`~roomcast_client.errors.ConnectFailed` carrying the status and the
broker's reason, read from the JSON error body it answers with
(docs/PROTOCOL-ADDITIONS.md, "HTTP error bodies").
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Final

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from protocol import Welcome, decode_server_message
from roomcast_client.errors import ConnectFailed

__all__ = ["OPEN_ERRORS", "open_connection"]

OPEN_ERRORS: Final = (OSError, TimeoutError, WebSocketException, ConnectFailed)
"""What a failed :func:`open_connection` raises (worth another attempt or not)."""

# The handshake was refused for who we are, not for a passing condition.
_REFUSING_STATUSES: Final = frozenset({401, 403})


class _RefusalBody(msgspec.Struct):
    """The fields of an HTTP error body that explain a refusal.

    ``reason`` is the field 401/403 bodies were first documented with;
    ``message`` is the one every HTTP error body carries. Other fields are
    ignored, so that bodies may grow.
    """

    reason: str | None = None
    message: str | None = None


_refusal_decoder: Final = msgspec.json.Decoder(_RefusalBody)


async def open_connection(
    url: str, *, open_timeout: float, headers: Mapping[str, str] | None = None
) -> tuple[ClientConnection, Welcome]:
    """Connect to ``url`` and wait for the broker's ``welcome``.

    Args:
        url: the broker's WebSocket URL (``ws://host:port/ws``).
        open_timeout: seconds allowed for the handshake, then as many for
            the ``welcome``.
        headers: extra HTTP headers for the handshake (credentials, say).

    Returns:
        The open connection and its welcome.

    Raises:
        OSError: nothing accepts connections there.
        TimeoutError: the handshake or the welcome took too long.
        websockets.exceptions.WebSocketException: the handshake failed.
        ConnectFailed: the broker refused the handshake with 401 or 403
            (``status`` and ``reason`` set), or the peer is not a roomcast
            broker.
    """
    try:
        ws = await connect(
            url,
            open_timeout=open_timeout,
            additional_headers=dict(headers) if headers else None,
            close_timeout=2.0,
        )
    except InvalidStatus as exc:
        refusal = _refused(exc)
        if refusal is None:
            raise
        raise refusal from exc
    try:
        async with asyncio.timeout(open_timeout):
            frame = await ws.recv()
        welcome = decode_server_message(frame)
        if not isinstance(welcome, Welcome):
            raise ConnectFailed(f"expected welcome as the first frame, got {frame[:200]!r}")
    except msgspec.DecodeError as exc:
        ws.transport.abort()
        raise ConnectFailed(f"not a roomcast broker: {exc}") from exc
    except BaseException:
        # Abandoned mid-handshake: no closing handshake is owed.
        ws.transport.abort()
        raise
    return ws, welcome


def _refused(error: InvalidStatus) -> ConnectFailed | None:
    """``error`` as a refusal of the client's identity, if it is one."""
    status = error.response.status_code
    if status not in _REFUSING_STATUSES:
        return None
    try:
        body = _refusal_decoder.decode(error.response.body or b"")
    except msgspec.DecodeError:
        body = _RefusalBody()  # not our JSON (a proxy's page, say): the status alone
    reason = body.reason or body.message
    said = f": {reason}" if reason else ""
    return ConnectFailed(
        f"the broker refused the handshake (HTTP {status}){said}", status=status, reason=reason
    )
