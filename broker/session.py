"""One client session's state and rules, without I/O.

A :class:`Session` takes a decoded request and says what should happen: an
immediate reply, or an action (join, leave, publish) for the connection to
carry out through the node. It owns the contract's per-session rules
(PROTOCOL.md, "Semantics"): membership checks, the room limit, and the say
rate.

Invariants:
    * ``rooms`` holds exactly the rooms whose join succeeded and that were not
      left since; the connection records a join with :meth:`joined` only
      after the node confirmed it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import assert_never

from protocol import (
    ClientMessage,
    ErrorCode,
    Join,
    Leave,
    Message,
    Ok,
    Ping,
    Pong,
    ProtocolError,
    Ref,
    Say,
    encode,
)

__all__ = ["JoinRoom", "LeaveRoom", "Plan", "Publish", "Reply", "Session", "TokenBucket", "ok"]


@dataclass(frozen=True, slots=True)
class Reply:
    """Send ``payload`` to this client only."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class JoinRoom:
    """Make the session a member of ``room``, then answer ``ref``."""

    room: str
    ref: Ref | None


@dataclass(frozen=True, slots=True)
class LeaveRoom:
    """Remove the session from ``room``, then answer ``ref``."""

    room: str
    ref: Ref | None


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish ``payload`` (an encoded ``message``) to ``room``, then answer ``ref``."""

    room: str
    payload: bytes
    ref: Ref | None


Plan = Reply | ProtocolError | JoinRoom | LeaveRoom | Publish | None
"""What a request asks for: a reply, an error reply, an action, or ``None``
(nothing to send)."""


class TokenBucket:
    """Allows ``rate`` events per second with bursts of ``burst``.

    Args:
        rate: refill per second; 0 or less disables the limit.
        burst: capacity.
        clock: monotonic seconds (injectable for tests).
    """

    __slots__ = ("_burst", "_clock", "_last", "_rate", "_tokens")

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._tokens = burst
        self._last = clock()

    def take(self) -> bool:
        """Take one token; ``False`` if the rate is exceeded."""
        if self._rate <= 0:
            return True
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class Session:
    """The rules of one client session.

    Args:
        session_id: this session's id, as sent in ``welcome``.
        max_rooms: how many rooms it may be in at once (0: unlimited).
        say_limit: the say-rate limiter.
    """

    def __init__(self, session_id: str, max_rooms: int, say_limit: TokenBucket) -> None:
        self.id = session_id
        self.rooms: set[str] = set()
        self._max_rooms = max_rooms
        self._say_limit = say_limit

    def plan(self, request: ClientMessage) -> Plan:
        """Decide what ``request`` asks for (no side effects but the rate counter)."""
        match request:
            case Say(room=room, body=body, ref=ref):
                if room not in self.rooms:
                    return _not_member(room, ref)
                if not self._say_limit.take():
                    return _error(ErrorCode.RATE_LIMITED, "say rate limit exceeded", ref)
                payload = encode(Message(room=room, from_=self.id, body=body))
                return Publish(room, payload, ref)
            case Join(room=room, ref=ref):
                if room in self.rooms:
                    return ok(ref)  # a no-op that succeeds, with no second `joined`
                if self._max_rooms and len(self.rooms) >= self._max_rooms:
                    message = f"session is at its limit of {self._max_rooms} rooms"
                    return _error(ErrorCode.TOO_MANY_ROOMS, message, ref)
                return JoinRoom(room, ref)
            case Leave(room=room, ref=ref):
                if room not in self.rooms:
                    return _not_member(room, ref)
                self.rooms.discard(room)
                return LeaveRoom(room, ref)
            case Ping(ref=ref):
                return Reply(encode(Pong(ref=ref)))
            case _:
                assert_never(request)

    def joined(self, room: str) -> None:
        """Record that the node confirmed the join of ``room``."""
        self.rooms.add(room)


def ok(ref: Ref | None) -> Reply | None:
    """The ``ok`` reply for ``ref``; a request without ``ref`` gets none."""
    return None if ref is None else Reply(encode(Ok(ref=ref)))


def _error(code: ErrorCode, message: str, ref: Ref | None) -> ProtocolError:
    return ProtocolError(code, message, ref)


def _not_member(room: str, ref: Ref | None) -> ProtocolError:
    return _error(ErrorCode.NOT_MEMBER, f"not a member of room {room!r}", ref)
