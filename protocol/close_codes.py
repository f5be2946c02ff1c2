"""WebSocket close codes of the broker (RFC 6455 section 7.4.1) and what a
client should do after each: the one table the server and every SDK read.

The server closes with these codes; a client decides from :func:`reconnect_rule`
whether to reconnect at once (to another node), after a backoff, or not at
all. 1006 is never sent: a client library reports it when the connection
dropped without a closing handshake.
"""

from __future__ import annotations

from enum import Enum, IntEnum
from typing import Final

__all__ = ["CLOSE_RULES", "CloseCode", "ReconnectRule", "reconnect_rule"]


class CloseCode(IntEnum):
    """Why a connection was closed."""

    NORMAL_CLOSURE = 1000
    """The client closed it (the server never closes with 1000)."""
    GOING_AWAY = 1001
    """Shutdown or drain: reconnect (to another node) at once."""
    PROTOCOL_ERROR = 1002
    """The client broke RFC 6455 framing (a client bug); reconnect after a backoff."""
    UNSUPPORTED_DATA = 1003
    """A binary frame: a client bug; do not reconnect."""
    ABNORMAL_CLOSURE = 1006
    """No close frame: the connection dropped (reported locally, never sent)."""
    INVALID_DATA = 1007
    """A text frame that is not UTF-8 (a client bug); reconnect after a backoff."""
    POLICY_VIOLATION = 1008
    """Credentials expired or refused, or no room joined within the idle
    timeout: do not reconnect as before (get a new token, or reconnect when
    about to join)."""
    MESSAGE_TOO_BIG = 1009
    """A frame over the size limit (that message was the bug, not the
    connection); reconnect after a backoff."""
    INTERNAL_ERROR = 1011
    """The server failed unexpectedly: reconnect after a backoff."""
    TRY_AGAIN_LATER = 1013
    """Slow consumer, or the node is overloaded: reconnect after a backoff."""


class ReconnectRule(Enum):
    """What a client does once a connection closed with a given code."""

    AT_ONCE = "at_once"
    """Reconnect now, to the next URL it knows; back off only if that fails."""
    BACKOFF = "backoff"
    """Reconnect after an exponential backoff with full jitter."""
    STOP = "stop"
    """Do not reconnect: the same client would be refused again."""


CLOSE_RULES: Final[dict[CloseCode, ReconnectRule]] = {
    CloseCode.NORMAL_CLOSURE: ReconnectRule.BACKOFF,
    CloseCode.GOING_AWAY: ReconnectRule.AT_ONCE,
    CloseCode.PROTOCOL_ERROR: ReconnectRule.BACKOFF,
    CloseCode.UNSUPPORTED_DATA: ReconnectRule.STOP,
    CloseCode.ABNORMAL_CLOSURE: ReconnectRule.BACKOFF,
    CloseCode.INVALID_DATA: ReconnectRule.BACKOFF,
    CloseCode.POLICY_VIOLATION: ReconnectRule.STOP,
    CloseCode.MESSAGE_TOO_BIG: ReconnectRule.BACKOFF,
    CloseCode.INTERNAL_ERROR: ReconnectRule.BACKOFF,
    CloseCode.TRY_AGAIN_LATER: ReconnectRule.BACKOFF,
}
"""The rule for every code the broker uses; any other code backs off."""


def reconnect_rule(code: int) -> ReconnectRule:
    """What a client should do after a close with ``code`` (unknown codes back off)."""
    try:
        return CLOSE_RULES[CloseCode(code)]
    except ValueError:
        return ReconnectRule.BACKOFF
