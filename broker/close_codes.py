"""WebSocket close codes the broker uses (RFC 6455 section 7.4.1), in one place."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CloseCode"]


class CloseCode(IntEnum):
    """Why the broker closed a connection, and what a client should do."""

    GOING_AWAY = 1001
    """Shutdown or drain: reconnect (to another node) at once."""
    UNSUPPORTED_DATA = 1003
    """A binary frame: a client bug; do not reconnect."""
    POLICY_VIOLATION = 1008
    """Do not reconnect as before: credentials expired or refused, or the
    session joined no room within the idle timeout (reconnect when about to
    join)."""
    MESSAGE_TOO_BIG = 1009
    """A frame over the size limit: a client bug."""
    TRY_AGAIN_LATER = 1013
    """Slow consumer, or the node is overloaded: reconnect after a backoff."""
