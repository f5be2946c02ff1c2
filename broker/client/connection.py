"""Opening one WebSocket connection to a broker and reading its ``welcome``.

The only module of the SDK that opens sockets; the client decides when.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Final

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from broker.client.errors import ConnectFailed
from protocol import Welcome, decode_server_message

__all__ = ["OPEN_ERRORS", "open_connection", "refused_status"]

OPEN_ERRORS: Final = (OSError, TimeoutError, WebSocketException, ConnectFailed)
"""What a failed :func:`open_connection` raises (worth another attempt or not)."""

# The handshake was refused for who we are, not for a passing condition.
_REFUSING_STATUSES: Final = frozenset({401, 403})


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
        ConnectFailed: the peer is not a roomcast broker.
    """
    ws = await connect(
        url,
        open_timeout=open_timeout,
        additional_headers=dict(headers) if headers else None,
        close_timeout=2.0,
    )
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


def refused_status(error: BaseException) -> int | None:
    """The HTTP status if ``error`` is a handshake refused for the client's identity."""
    if isinstance(error, InvalidStatus) and error.response.status_code in _REFUSING_STATUSES:
        return error.response.status_code
    return None
