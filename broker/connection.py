"""One client session over one :class:`~broker.wire.Wire`: the welcome, request
dispatch, replies, and cleanup on every kind of exit.

The rules live in :class:`broker.session.Session` (no I/O) and the join and
leave sequences in :class:`broker.node.Node`; this module moves messages
between the wire, the session and the node. Requests are handled in the order
they arrive: most complete at once, in the wire's ``data_received``; a
``join`` that must wait for the backend holds back the frames after it (and,
past a few, the socket's reading) until it is done. ``join``, ``leave`` and
``say`` are answered once the backend settled what they published;
``history`` and ``presence`` once the store's read came back, while the
requests after them go on.

Authenticated sessions (docs/PROTOCOL-ADDITIONS.md): the connection is
closed with 1008 at the token's ``exp`` unless a ``refresh`` moved it.

Invariants:
    * After :meth:`ClientConnection.closed`, the session is in no room on this
      node, including the room whose join was still in flight.
    * Every request gets exactly one reply (``ok`` only when it has a ``ref``),
      whatever failed, while the connection is open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import msgspec

from broker.backends.base import BackendUnavailable, Position
from broker.grants import Identity, TokenVerifier
from broker.node import Node, new_session_id
from broker.outbox import DirectOutbox, FramedOutbox, Outbox, SlowConsumerPolicy, WriteGuard
from broker.publish_outcome import outcome_of
from broker.session import (
    JoinRoom,
    LeaveRoom,
    Publish,
    ReadHistory,
    ReadPresence,
    Reauthorized,
    Rejoin,
    Reply,
    Session,
    TokenBucket,
)
from protocol import (
    CloseCode,
    ErrorCode,
    Ok,
    ProtocolError,
    Ref,
    Welcome,
    decode_request,
    encode,
    encode_history,
    error_frame,
)
from protocol import Position as SincePosition
from protocol.codec import encode_presence

__all__ = ["ClientConnection", "ClientWire", "ConnectionLimits"]

log = logging.getLogger("broker.connection")

BACKLOG_PAUSE = 32  # frames held behind a pending join before reading pauses


class ClientWire(Protocol):
    """What a connection needs of its socket (:class:`broker.wire.Wire` fits)."""

    @property
    def peer(self) -> str:
        """The client's address, for logs."""
        ...

    @property
    def close_code(self) -> int | None:
        """The close code received or sent, if any."""
        ...

    @property
    def close_reason(self) -> str | None:
        """The close reason received or sent, if any."""
        ...

    def send_text(self, payload: bytes) -> None:
        """Frame (and compress) and write one text message now."""
        ...

    def is_open(self) -> bool:
        """Whether messages may still be sent."""
        ...

    def compressed(self) -> bool:
        """Whether permessage-deflate was negotiated."""
        ...

    @property
    def guard(self) -> WriteGuard:
        """The slow-consumer policy over everything written to the socket."""
        ...

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake."""
        ...

    def pause_reading(self) -> None:
        """Stop reading from the socket."""
        ...

    def resume_reading(self) -> None:
        """Read from the socket again."""
        ...


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Per-connection settings taken from the node's configuration.

    Attributes:
        max_rooms: rooms a session may be in (0: unlimited).
        say_rate: says per second, sustained (0: unlimited).
        say_burst: says allowed in a burst.
        slow_consumer: when a client that does not read is cut off.
        idle_timeout: seconds a session may go without joining a room (0: never).
        verifier: verifies ``refresh`` tokens (``None``: anonymous mode).
        join_rate: joins and leaves per second, together, sustained (0: unlimited).
        join_burst: joins and leaves allowed in a burst.
    """

    max_rooms: int
    say_rate: float
    say_burst: int
    slow_consumer: SlowConsumerPolicy
    idle_timeout: float = 0.0
    verifier: TokenVerifier | None = None
    join_rate: float = 0.0
    join_burst: int = 0


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
        "_joining_room",
        "_reading",
        "_reading_paused",
        "node",
        "outbox",
        "session",
        "wire",
    )

    def __init__(
        self,
        node: Node,
        wire: ClientWire,
        limits: ConnectionLimits,
        identity: Identity | None = None,
    ) -> None:
        self.node = node
        self.wire = wire
        self.session = Session(
            new_session_id(),
            limits.max_rooms,
            TokenBucket(limits.say_rate, limits.say_burst),
            identity,
            limits.verifier,
            join_limit=TokenBucket(limits.join_rate, limits.join_burst),
            history_size=node.backend.history_size,
        )
        self._expiry: asyncio.TimerHandle | None = None
        if identity is not None:
            self._expire_at(identity.expires_at)
        self.outbox = self._make_outbox()
        self._backlog: list[bytes] | None = None  # not None while a join is pending
        # The pending join's task: held so the loop's weak reference is not its only one.
        self._joining: asyncio.Task[None] | None = None
        self._joining_room: str | None = None
        self._closed = False
        self._reading_paused = False
        # History and presence reads in flight: held so the loop's weak
        # reference is not their only one. Made at the first read (an empty
        # set is 216 bytes of every idle connection).
        self._reading: set[asyncio.Task[None]] | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        if limits.idle_timeout > 0:
            self._idle_timer = asyncio.get_running_loop().call_later(
                limits.idle_timeout, self._idle_timeout
            )

    def _make_outbox(self) -> Outbox:
        # The wire's guard applies the slow-consumer policy to every byte it
        # writes (replies, fan-out, pongs, close frames): one budget per client.
        wire = self.wire
        if wire.compressed():
            # Compressed frames differ per connection: no shared frame bytes.
            return DirectOutbox(wire.send_text)
        return FramedOutbox(self.node.scheduler, wire.guard)

    # --- lifecycle -----------------------------------------------------------

    def open(self) -> None:
        """Greet the client."""
        log.info("connect session=%s peer=%s", self.session.id, self.wire.peer)
        counters = self.node.counters
        counters.sessions += 1
        counters.connections_total += 1
        user = self.session.user
        welcome = Welcome(
            session=self.session.id, node=self.node.id, user=msgspec.UNSET if user is None else user
        )
        # Straight to the wire, not the outbox: it leaves in one write with
        # the 101 response that is still waiting there.
        self.wire.send_text(encode(welcome))

    def closed(self) -> None:
        """The connection ended, for whatever reason: leave every room, and the
        other members are told (PROTOCOL.md, "Semantics")."""
        self._closed = True
        self.outbox.close()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._expiry is not None:
            self._expiry.cancel()
        rooms = set(self.session.rooms)
        if self._joining_room is not None:
            # Past its subscription, an in-flight join is a member already;
            # before it, Node.join sees the closed outbox and joins nothing.
            rooms.add(self._joining_room)
        for room in rooms:
            self.node.leave(room, self.session.id, self.session.user)
        self.session.rooms.clear()
        self.node.counters.sessions -= 1
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
                    self.node.counters.says += 1
                    accepted = self.node.publish(room, self.session.id, payload)
                    accepted.add_done_callback(partial(self._published, ref))
                case JoinRoom(room=room, ref=ref, since=since):
                    self._backlog = []
                    self._joining_room = room
                    joining = self._join(room, ref, since)
                    self._joining = asyncio.get_running_loop().create_task(joining)
                case Rejoin(room=room, ref=ref):
                    self._reply_ok(ref, self.node.position(room))
                case ReadHistory(room=room, limit=limit, before=before, ref=ref):
                    self._read_later(self._read_history(room, limit, before, ref))
                case ReadPresence(room=room, ref=ref):
                    self._read_later(self._read_presence(room, ref))
                case LeaveRoom(room=room, ref=ref):
                    told = self.node.leave(room, self.session.id, self.session.user)
                    told.add_done_callback(lambda _: self._reply_ok(ref))
                case Reauthorized(expires_at=expires_at, ref=ref):
                    self._expire_at(expires_at)
                    self._reply_ok(ref)
        except Exception:
            log.exception("internal error session=%s", self.session.id)
            ref = getattr(request, "ref", None)
            self._reply_error(ProtocolError(ErrorCode.INTERNAL, "internal error", ref))

    async def _join(self, room: str, ref: Ref | None, since: SincePosition | None) -> None:
        def answer(position: Position | None, recovered: bool | None) -> None:
            # Called by the node between making the session a member and
            # letting live messages through: the ok comes first.
            self.session.joined(room)
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            self._reply_ok(ref, position, recovered)

        session, user = self.session.id, self.session.user
        try:
            await self.node.join(room, session, self.outbox, user, since, answer)
        except BackendUnavailable as exc:
            log.warning("join failed session=%s room=%s: %s", self.session.id, room, exc)
            self._reply_error(ProtocolError(ErrorCode.UNAVAILABLE, "backend unavailable", ref))
        except Exception:
            # Every request gets its one reply, whatever failed.
            log.exception("join failed session=%s room=%s", self.session.id, room)
            self._reply_error(ProtocolError(ErrorCode.INTERNAL, "internal error", ref))
        finally:
            self._joining = None
            self._joining_room = None
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

    def _published(self, ref: Ref | None, accepted: asyncio.Future[Position | None]) -> None:
        failure = outcome_of(accepted)
        if failure is None:
            # docs/HISTORY-PRESENCE.md, "Positions": the sender learns the
            # position of its own message from the ok.
            self._reply_ok(ref, accepted.result())
        else:
            self._reply_error(ProtocolError(failure.code, failure.message, ref))

    async def _read_history(
        self, room: str, limit: int | None, before: int | None, ref: Ref | None
    ) -> None:
        try:
            read = await self.node.history(room, limit, before)
        except BackendUnavailable as exc:
            log.warning("history failed session=%s room=%s: %s", self.session.id, room, exc)
            self._reply_error(ProtocolError(ErrorCode.UNAVAILABLE, "backend unavailable", ref))
            return
        except Exception:
            log.exception("history failed session=%s room=%s", self.session.id, room)
            self._reply_error(ProtocolError(ErrorCode.INTERNAL, "internal error", ref))
            return
        if read is None:
            self.outbox.send_payload(encode_history(room, None, [], ref))
        else:
            frames = [frame for _, frame in read.messages]
            self.outbox.send_payload(encode_history(room, (read.offset, read.epoch), frames, ref))

    async def _read_presence(self, room: str, ref: Ref | None) -> None:
        # docs/HISTORY-PRESENCE.md, "Presence": the store away is
        # `unavailable`, and the connection stays open.
        try:
            read = await self.node.presence(room)
        except BackendUnavailable as exc:
            log.warning("presence failed session=%s room=%s: %s", self.session.id, room, exc)
            self._reply_error(ProtocolError(ErrorCode.UNAVAILABLE, "backend unavailable", ref))
            return
        except Exception:
            log.exception("presence failed session=%s room=%s", self.session.id, room)
            self._reply_error(ProtocolError(ErrorCode.INTERNAL, "internal error", ref))
            return
        self.outbox.send_payload(
            encode_presence(room, read.count, read.users, read.members, read.truncated, ref)
        )

    def _read_later(self, reading: Coroutine[Any, Any, None]) -> None:
        # A read answers on its own, after the requests behind it that
        # complete at once, as a say's ok does.
        task = asyncio.get_running_loop().create_task(reading)
        if self._reading is None:
            self._reading = set()
        self._reading.add(task)
        task.add_done_callback(self._reading.discard)

    # --- replies -------------------------------------------------------------

    def _reply_ok(
        self,
        ref: Ref | None,
        position: Position | None = None,
        recovered: bool | None = None,
    ) -> None:
        if ref is None:
            return  # a request without ref gets no ok (PROTOCOL.md)
        if position is None:
            reply = Ok(ref=ref)
        elif recovered is None:
            reply = Ok(ref=ref, offset=position.offset, epoch=position.epoch)
        else:
            reply = Ok(ref=ref, offset=position.offset, epoch=position.epoch, recovered=recovered)
        self.outbox.send_payload(encode(reply))

    def _reply_error(self, error: ProtocolError) -> None:
        self.node.counters.errors[error.code.value] += 1
        log.info("error session=%s code=%s message=%s", self.session.id, error.code, error.message)
        self.outbox.send_payload(error_frame(error))

    # --- policies ------------------------------------------------------------

    def slow_consumer(self, buffered: int) -> None:
        """The wire's write guard cut this client off: nothing more is queued."""
        self.outbox.close()
        log.warning(
            "slow consumer session=%s peer=%s buffered=%d: closing with 1013",
            self.session.id,
            self.wire.peer,
            buffered,
        )
        self.node.counters.slow_consumers += 1
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
