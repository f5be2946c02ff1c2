"""One client session over one :class:`~broker.wire.Wire`: the welcome, request
dispatch, replies, and cleanup on every kind of exit.

The rules live in :class:`broker.session.Session` (no I/O); this module moves
messages between the wire, the session and the node. Requests are handled in
the order they arrive: most complete at once, in the wire's
``data_received``; a ``join`` that must wait for the backend holds back the
frames after it (and, past a few, the socket's reading) until it is done.

Authenticated sessions (docs/PROTOCOL-ADDITIONS.md): the connection is
closed with 1008 at the token's ``exp`` unless a ``refresh`` moved it.

Invariants:
    * After :meth:`ClientConnection.closed`, the session is in no room on this
      node, including rooms whose join was still in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from functools import partial

import msgspec

from broker.auth import Authenticator, Identity
from broker.backends.base import BackendUnavailable, OutcomeUnknown
from broker.node import Node, new_session_id
from broker.outbox import DirectOutbox, FramedOutbox, Outbox, SlowConsumerPolicy
from broker.session import (
    JoinRoom,
    LeaveRoom,
    Publish,
    Reauthorized,
    Reply,
    Session,
    TokenBucket,
    ok,
)
from broker.wire import Wire
from protocol import (
    CloseCode,
    ErrorCode,
    ProtocolError,
    Ref,
    Welcome,
    decode_request,
    encode,
    error_frame,
)

__all__ = ["ClientConnection", "ConnectionLimits"]

log = logging.getLogger("broker.connection")

BACKLOG_PAUSE = 32  # frames held behind a pending join before reading pauses


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Per-connection settings taken from the node's configuration.

    Attributes:
        max_rooms: rooms a session may be in (0: unlimited).
        say_rate: says per second, sustained (0: unlimited).
        say_burst: says allowed in a burst.
        slow_consumer: when a client that does not read is cut off.
        idle_timeout: seconds a session may go without joining a room (0: never).
        authenticator: verifies ``refresh`` tokens (``None``: anonymous mode).
    """

    max_rooms: int
    say_rate: float
    say_burst: int
    slow_consumer: SlowConsumerPolicy
    idle_timeout: float = 0.0
    authenticator: Authenticator | None = None


class ClientConnection:
    """The broker's side of one client session.

    Args:
        node: the node it belongs to.
        wire: its connection.
        limits: the node's per-connection limits.
        identity: the token verified at the handshake (``None``: anonymous).
    """

    __slots__ = (
        "_backlog",
        "_closed",
        "_expiry",
        "_idle_timer",
        "_joining",
        "_reading_paused",
        "node",
        "outbox",
        "session",
        "wire",
    )

    def __init__(
        self, node: Node, wire: Wire, limits: ConnectionLimits, identity: Identity | None = None
    ) -> None:
        self.node = node
        self.wire = wire
        self.session = Session(
            new_session_id(),
            limits.max_rooms,
            TokenBucket(limits.say_rate, limits.say_burst),
            identity,
            limits.authenticator,
        )
        self._expiry: asyncio.TimerHandle | None = None
        if identity is not None:
            self._expire_at(identity.expires_at)
        self.outbox = self._make_outbox(limits.slow_consumer)
        self._backlog: list[bytes] | None = None  # not None while a join is pending
        # The pending join's task: held so the loop's weak reference is not its only one.
        self._joining: asyncio.Task[None] | None = None
        self._closed = False
        self._reading_paused = False
        self._idle_timer: asyncio.TimerHandle | None = None
        if limits.idle_timeout > 0:
            self._idle_timer = asyncio.get_running_loop().call_later(
                limits.idle_timeout, self._idle_timeout
            )

    def _make_outbox(self, policy: SlowConsumerPolicy) -> Outbox:
        wire = self.wire
        assert wire.transport is not None
        # resume_writing then tells the outbox when a slow member caught up.
        high = policy.high_water
        wire.transport.set_write_buffer_limits(high=high, low=high // 2)
        if wire.compressed():
            # Compressed frames differ per connection: no shared frame bytes.
            loop = asyncio.get_running_loop()
            return DirectOutbox(wire.send_text, wire.transport, loop, policy, self._slow_consumer)
        return FramedOutbox(
            wire.transport, wire.is_open, self.node.scheduler, policy, self._slow_consumer
        )

    # --- lifecycle -----------------------------------------------------------

    def open(self) -> None:
        """Greet the client."""
        log.info("connect session=%s peer=%s", self.session.id, self.wire.peer)
        self.node.sessions += 1
        self.node.connections_total += 1
        user = self.session.user
        welcome = Welcome(
            session=self.session.id, node=self.node.id, user=msgspec.UNSET if user is None else user
        )
        self.outbox.send_payload(encode(welcome))

    def closed(self) -> None:
        """The connection ended, for whatever reason: leave every room, and the
        other members are told (PROTOCOL.md, "Semantics")."""
        self._closed = True
        self.outbox.close()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._expiry is not None:
            self._expiry.cancel()
        for room in tuple(self.session.rooms):
            self.node.leave(room, self.session.id, self.session.user)
        self.session.rooms.clear()
        self.node.sessions -= 1
        log.info(
            "disconnect session=%s peer=%s code=%s reason=%r",
            self.session.id,
            self.wire.peer,
            self.wire.close_code,
            self.wire.close_reason,
        )

    def close(self, code: int, reason: str) -> None:
        """Write what is queued, then close the WebSocket with ``code``."""
        self.outbox.flush()
        self.wire.close(code, reason)

    # --- requests ------------------------------------------------------------

    def receive(self, frame: bytes) -> None:
        """Handle one text message, after any that wait for a join."""
        backlog = self._backlog
        if backlog is not None:
            backlog.append(frame)
            if len(backlog) >= BACKLOG_PAUSE and not self._reading_paused:
                self._reading_paused = True
                self.wire.pause_reading()
            return
        self._handle(frame)

    def _handle(self, frame: bytes) -> None:
        request = decode_request(frame)
        if isinstance(request, ProtocolError):
            self._reply_error(request)
            return
        try:
            plan = self.session.plan(request)
            match plan:
                case None:
                    pass
                case Reply(payload=payload):
                    self.outbox.send_payload(payload)
                case ProtocolError():
                    self._reply_error(plan)
                case Publish(room=room, payload=payload, ref=ref):
                    self.node.says += 1
                    accepted = self.node.publish(room, self.session.id, payload)
                    accepted.add_done_callback(partial(self._published, ref))
                case JoinRoom(room=room, ref=ref):
                    self._backlog = []
                    self._joining = asyncio.get_running_loop().create_task(self._join(room, ref))
                case LeaveRoom(room=room, ref=ref):
                    announced = self.node.leave(room, self.session.id, self.session.user)
                    if announced is None:
                        self._reply_ok(ref)
                    else:
                        # ok once the others are being told, as for join.
                        announced.add_done_callback(lambda _: self._reply_ok(ref))
                case Reauthorized(expires_at=expires_at, ref=ref):
                    self._expire_at(expires_at)
                    self._reply_ok(ref)
        except Exception:
            log.exception("internal error session=%s", self.session.id)
            ref = getattr(request, "ref", None)
            self._reply_error(ProtocolError(ErrorCode.INTERNAL, "internal error", ref))

    async def _join(self, room: str, ref: Ref | None) -> None:
        try:
            await self.node.join(room, self.session.id, self.outbox, self.session.user)
        except BackendUnavailable as exc:
            log.warning("join failed session=%s room=%s: %s", self.session.id, room, exc)
            self._reply_error(ProtocolError(ErrorCode.UNAVAILABLE, "backend unavailable", ref))
        except Exception:
            # Every request gets its one reply, whatever failed.
            log.exception("join failed session=%s room=%s", self.session.id, room)
            self._reply_error(ProtocolError(ErrorCode.INTERNAL, "internal error", ref))
        else:
            if self._closed:
                # The client left while the node subscribed: undo at once.
                self.node.leave(room, self.session.id, self.session.user)
                return
            self.session.joined(room)
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            self._reply_ok(ref)
        finally:
            self._joining = None
            self._resume()

    def _resume(self) -> None:
        backlog, self._backlog = self._backlog or [], None
        if self._reading_paused:
            self._reading_paused = False
            self.wire.resume_reading()
        for index, frame in enumerate(backlog):
            if self._closed:
                return
            self._handle(frame)
            if self._backlog is not None:  # another join: the rest waits for it
                self._backlog.extend(backlog[index + 1 :])
                if len(self._backlog) >= BACKLOG_PAUSE:
                    self._reading_paused = True
                    self.wire.pause_reading()
                return

    def _published(self, ref: Ref | None, accepted: asyncio.Future[None]) -> None:
        error = None if accepted.cancelled() else accepted.exception()
        if isinstance(error, OutcomeUnknown):
            # Not `unavailable`: that promises nothing was sent (PROTOCOL.md).
            message = "Redis did not confirm the publish; it may still reach the other members"
            self._reply_error(ProtocolError(ErrorCode.INTERNAL, message, ref))
        elif accepted.cancelled() or error is not None:
            message = "the backend could not take the publish; nothing was sent"
            self._reply_error(ProtocolError(ErrorCode.UNAVAILABLE, message, ref))
        else:
            self._reply_ok(ref)

    # --- replies -------------------------------------------------------------

    def _reply_ok(self, ref: Ref | None) -> None:
        reply = ok(ref)
        if reply is not None:
            self.outbox.send_payload(reply.payload)

    def _reply_error(self, error: ProtocolError) -> None:
        self.node.errors[error.code.value] += 1
        log.info("error session=%s code=%s message=%s", self.session.id, error.code, error.message)
        self.outbox.send_payload(error_frame(error))

    # --- policies ------------------------------------------------------------

    def _slow_consumer(self, buffered: int) -> None:
        log.warning(
            "slow consumer session=%s peer=%s buffered=%d: closing with 1013",
            self.session.id,
            self.wire.peer,
            buffered,
        )
        self.node.slow_consumers += 1
        self.wire.close(CloseCode.TRY_AGAIN_LATER, "slow consumer")

    def _idle_timeout(self) -> None:
        self._idle_timer = None
        log.info(
            "idle session=%s peer=%s: no room joined; closing", self.session.id, self.wire.peer
        )
        self.close(CloseCode.POLICY_VIOLATION, "idle: no room joined")

    def _expire_at(self, expires_at: float) -> None:
        # docs/PROTOCOL-ADDITIONS.md, "refresh": at exp, without a refresh, 1008.
        if self._expiry is not None:
            self._expiry.cancel()
        delay = max(0.0, expires_at - time.time())
        self._expiry = asyncio.get_running_loop().call_later(delay, self._expired)

    def _expired(self) -> None:
        self._expiry = None
        log.info("token expired session=%s peer=%s: closing", self.session.id, self.wire.peer)
        self.close(CloseCode.POLICY_VIOLATION, "token expired")
