"""What every stage of a client connection shares: the registry of live
connections it belongs to (the listener), and the limits and timeouts of the
listener that accepted it.

A connection goes through up to two stages, each the transport's protocol in
turn: :class:`~broker.edge.Edge` (the request head), then
:class:`~broker.http.HttpExchange` or :class:`~broker.wire.Wire`. Each stage
adds itself to the registry before the previous one leaves it, so a drain
never misses a connection in the middle of a handover.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from websockets.extensions.base import ServerExtensionFactory

from broker.outbox import SlowConsumerPolicy

__all__ = ["Link", "Registry", "WireSettings"]


class Link(Protocol):
    """A live connection, whatever its stage."""

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        ...


class Registry(Protocol):
    """Where live connections are kept (the listener)."""

    def add(self, link: Link) -> None:
        """A connection was made or handed over."""
        ...

    def discard(self, link: Link) -> None:
        """A connection was lost or handed over."""
        ...


class WireSettings:
    """Limits and timeouts every connection of a listener shares.

    Args:
        max_size: the largest message, in bytes.
        handshake_timeout: seconds a client may take to send its request.
        close_timeout: seconds the closing handshake may take.
        compression: whether permessage-deflate is offered.
        slow_consumer: what a client that does not read may cost.
        ws_path: the WebSocket endpoint.
    """

    __slots__ = (
        "close_timeout",
        "extensions",
        "handshake_timeout",
        "max_size",
        "slow_consumer",
        "ws_path",
    )

    def __init__(
        self,
        max_size: int,
        handshake_timeout: float,
        close_timeout: float,
        compression: bool,
        slow_consumer: SlowConsumerPolicy | None = None,
        ws_path: str = "/ws",
    ) -> None:
        self.max_size = max_size
        self.handshake_timeout = handshake_timeout
        self.close_timeout = close_timeout
        self.slow_consumer = slow_consumer or SlowConsumerPolicy()
        self.ws_path = ws_path
        self.extensions: Sequence[ServerExtensionFactory] | None = None
        if compression:
            from websockets.extensions.permessage_deflate import (
                enable_server_permessage_deflate,
            )

            self.extensions = enable_server_permessage_deflate(None)
