"""One client session's state and rules, without I/O.

A :class:`Session` takes a decoded request and says what should happen: an
immediate reply, or an action (join, leave, publish) for the connection to
carry out through the node. It owns the contract's per-session rules
(PROTOCOL.md, "Semantics"): membership checks, the room limit, the say rate
and the join/leave rate; and, when the node requires tokens, the room rights
and ``refresh`` (docs/PROTOCOL-ADDITIONS.md), whose tokens a
:class:`~broker.grants.TokenVerifier` checks (this module needs no JWT
library).

Invariants:
    * ``rooms`` holds exactly the rooms whose join succeeded and that were not
      left since; the connection records a join with :meth:`joined` only
      after the node confirmed it.
    * ``identity`` is ``None`` exactly for an anonymous session; otherwise it
      grants ``join`` in every room of ``rooms`` (a refresh that would not is
      refused).
    * A join or leave that is acted on took one token of the join limiter; a
      refused one (``rate_limited``, or any other error) changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import assert_never

import msgspec

from broker.grants import Identity, TokenError, TokenVerifier
from protocol import (
    ClientMessage,
    ErrorCode,
    History,
    Join,
    Leave,
    Message,
    Ok,
    Ping,
    Pong,
    Position,
    Presence,
    ProtocolError,
    Ref,
    Refresh,
    Say,
    encode,
)

__all__ = [
    "JoinRoom",
    "LeaveRoom",
    "Plan",
    "Publish",
    "ReadHistory",
    "ReadPresence",
    "Reauthorized",
    "Rejoin",
    "Reply",
    "Session",
    "TokenBucket",
    "ok",
]


@dataclass(frozen=True, slots=True)
class Reply:
    """Send ``payload`` to this client only."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class JoinRoom:
    """Make the session a member of ``room`` (first replaying what was said
    after ``since``, if history still holds it), then answer ``ref``."""

    room: str
    ref: Ref | None
    since: Position | None = None


@dataclass(frozen=True, slots=True)
class Rejoin:
    """A join of a room the session is in: a no-op, answered with the room's
    current position (docs/HISTORY-PRESENCE.md, "Recovery")."""

    room: str
    ref: Ref | None


@dataclass(frozen=True, slots=True)
class ReadHistory:
    """Answer ``ref`` with the room's kept messages (docs/HISTORY-PRESENCE.md,
    "history")."""

    room: str
    limit: int | None
    before: int | None
    ref: Ref | None


@dataclass(frozen=True, slots=True)
class ReadPresence:
    """Answer ``ref`` with who is in ``room`` on every node
    (docs/HISTORY-PRESENCE.md, "Presence")."""

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


@dataclass(frozen=True, slots=True)
class Reauthorized:
    """A ``refresh`` succeeded: the connection now ends at ``expires_at``; answer ``ref``."""

    expires_at: float
    ref: Ref | None


Plan = (
    Reply
    | ProtocolError
    | JoinRoom
    | Rejoin
    | LeaveRoom
    | Publish
    | ReadHistory
    | ReadPresence
    | Reauthorized
    | None
)
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
        identity: the verified token of the handshake; ``None``: anonymous.
        verifier: verifies the tokens of ``refresh`` (``None``: anonymous mode).
        join_limit: the limiter of joins and leaves together (``None``: unlimited).
        history_size: messages the node keeps per room (0: rooms keep no
            history and have no positions).
    """

    def __init__(
        self,
        session_id: str,
        max_rooms: int,
        say_limit: TokenBucket,
        identity: Identity | None = None,
        verifier: TokenVerifier | None = None,
        *,
        join_limit: TokenBucket | None = None,
        history_size: int = 0,
    ) -> None:
        self.id = session_id
        self.rooms: set[str] = set()
        self.identity = identity
        self._max_rooms = max_rooms
        self._say_limit = say_limit
        self._verifier = verifier
        self._join_limit = join_limit
        self._history_size = history_size

    @property
    def user(self) -> str | None:
        """The authenticated user (the token's ``sub``), ``None`` when anonymous."""
        return None if self.identity is None else self.identity.user

    def plan(self, request: ClientMessage) -> Plan:
        """Decide what ``request`` asks for (no side effects but the rate counter)."""
        match request:
            case Say(room=room, body=body, ref=ref):
                identity = self.identity
                if identity is not None and not identity.allows(room, "say"):
                    return _forbidden("say", room, ref)
                if room not in self.rooms:
                    return _not_member(room, ref)
                if not self._say_limit.take():
                    return _error(ErrorCode.RATE_LIMITED, "say rate limit exceeded", ref)
                # Encoded once, with the sender's user, on the origin node: the
                # same bytes cross Redis and reach every member.
                user = msgspec.UNSET if identity is None else identity.user
                payload = encode(Message(room=room, from_=self.id, body=body, user=user))
                return Publish(room, payload, ref)
            case Join(room=room, ref=ref, since=since):
                if self.identity is not None and not self.identity.allows(room, "join"):
                    return _forbidden("join", room, ref)
                if room in self.rooms:
                    # A no-op that succeeds, with no second `joined`; with
                    # history, its ok tells the current position.
                    return Rejoin(room, ref) if self._history_size else ok(ref)
                if self._max_rooms and len(self.rooms) >= self._max_rooms:
                    message = f"session is at its limit of {self._max_rooms} rooms"
                    return _error(ErrorCode.TOO_MANY_ROOMS, message, ref)
                if not self._may_change_rooms():
                    return _error(ErrorCode.RATE_LIMITED, "join/leave rate limit exceeded", ref)
                return JoinRoom(room, ref, None if since is msgspec.UNSET else since)
            case Leave(room=room, ref=ref):
                if room not in self.rooms:
                    return _not_member(room, ref)
                if not self._may_change_rooms():
                    return _error(ErrorCode.RATE_LIMITED, "join/leave rate limit exceeded", ref)
                self.rooms.discard(room)
                return LeaveRoom(room, ref)
            case Ping(ref=ref):
                return Reply(encode(Pong(ref=ref)))
            case Refresh(token=token, ref=ref):
                return self._refresh(token, ref)
            case History(room=room, limit=limit, before=before, ref=ref):
                if room not in self.rooms:
                    return _not_member(room, ref)
                size = self._history_size
                if size and limit is not msgspec.UNSET and limit > size:
                    message = f"limit must be from 1 to {size} (the history size) - at `$.limit`"
                    return _error(ErrorCode.BAD_MESSAGE, message, ref)
                return ReadHistory(
                    room,
                    None if limit is msgspec.UNSET else limit,
                    None if before is msgspec.UNSET else before,
                    ref,
                )
            case Presence(room=room, ref=ref):
                # docs/HISTORY-PRESENCE.md, "Presence": only a member may ask.
                if room not in self.rooms:
                    return _not_member(room, ref)
                return ReadPresence(room, ref)
            case _:  # pragma: no cover - unreachable: mypy checks the match is exhaustive
                assert_never(request)

    def _may_change_rooms(self) -> bool:
        # Issue 11: a client cycling join/leave makes every member of the room
        # receive joined/left; the budget bounds what one session can cause.
        return self._join_limit is None or self._join_limit.take()

    def _refresh(self, token: str, ref: Ref | None) -> Plan:
        # docs/PROTOCOL-ADDITIONS.md, "refresh": same user, and the new grants
        # must still cover every room the session is in; else nothing changes.
        current = self.identity
        if self._verifier is None or current is None:
            return _error(ErrorCode.UNAUTHORIZED, "this server does not use tokens", ref)
        try:
            identity = self._verifier.verify(token)
        except TokenError as exc:
            return _error(ErrorCode.UNAUTHORIZED, exc.reason, ref)
        if identity.user != current.user:
            return _error(ErrorCode.UNAUTHORIZED, "the new token is for another user", ref)
        lost = sorted(room for room in self.rooms if not identity.allows(room, "join"))
        if lost:
            message = f"the new token does not allow room {lost[0]!r}; leave it first"
            return _error(ErrorCode.FORBIDDEN, message, ref)
        self.identity = identity
        return Reauthorized(identity.expires_at, ref)

    def joined(self, room: str) -> None:
        """Record that the node confirmed the join of ``room``."""
        self.rooms.add(room)


def ok(ref: Ref | None) -> Reply | None:
    """The ``ok`` reply for ``ref``; a request without ``ref`` gets none."""
    return None if ref is None else Reply(encode(Ok(ref=ref)))


def _error(code: ErrorCode, message: str, ref: Ref | None) -> ProtocolError:
    return ProtocolError(code, message, ref)


def _forbidden(right: str, room: str, ref: Ref | None) -> ProtocolError:
    return _error(ErrorCode.FORBIDDEN, f"the token does not allow {right} in room {room!r}", ref)


def _not_member(room: str, ref: Ref | None) -> ProtocolError:
    return _error(ErrorCode.NOT_MEMBER, f"not a member of room {room!r}", ref)
