"""One client connection's I/O: the welcome, the read loop, replies, and
cleanup on every kind of exit.

The rules live in :class:`broker.session.Session` (no I/O); this module only
moves frames between the socket, the session and the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from functools import partial

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from broker.backends.base import BackendUnavailable
from broker.close_codes import CloseCode
from broker.node import Node, new_session_id
from broker.outbox import DirectOutbox, FramedOutbox, Outbox, SlowConsumerPolicy
from broker.session import JoinRoom, LeaveRoom, Publish, Reply, Session, TokenBucket, ok
from protocol import ErrorCode, ProtocolError, Ref, Welcome, decode_request, encode, error_frame

__all__ = ["ConnectionLimits", "serve_connection"]

log = logging.getLogger("broker.connection")


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Per-connection settings taken from the node's configuration.

    Attributes:
        max_rooms: rooms a session may be in (0: unlimited).
        say_rate: says per second, sustained (0: unlimited).
        say_burst: says allowed in a burst.
        slow_consumer: when a client that does not read is cut off.
        idle_timeout: seconds a session may go without joining a room (0: never).
    """

    max_rooms: int
    say_rate: float
    say_burst: int
    slow_consumer: SlowConsumerPolicy
    idle_timeout: float = 0.0


async def serve_connection(node: Node, ws: ServerConnection, limits: ConnectionLimits) -> None:
    """Run one client session from ``welcome`` to cleanup; never raises."""
    session = Session(
        new_session_id(), limits.max_rooms, TokenBucket(limits.say_rate, limits.say_burst)
    )
    handler = _ConnectionHandler(node, ws, session, limits)
    await handler.run()


class _ConnectionHandler:
    def __init__(
        self, node: Node, ws: ServerConnection, session: Session, limits: ConnectionLimits
    ) -> None:
        self.node = node
        self.ws = ws
        self.session = session
        self.peer = _peer(ws)
        self.outbox = self._make_outbox(limits.slow_consumer)
        self._closing: asyncio.Task[None] | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        if limits.idle_timeout > 0:
            self._idle_timer = asyncio.get_running_loop().call_later(
                limits.idle_timeout, self._idle_timeout
            )

    def _make_outbox(self, policy: SlowConsumerPolicy) -> Outbox:
        ws = self.ws
        on_slow = self._slow_consumer
        if ws.protocol.extensions:
            # Compressed frames differ per connection: no shared frame bytes.
            def send_text(payload: bytes) -> None:
                if ws.protocol.state is State.OPEN:
                    ws.protocol.send_text(payload)
                    ws.send_data()

            return DirectOutbox(
                send_text, ws.transport, asyncio.get_running_loop(), policy, on_slow
            )
        return FramedOutbox(
            ws.transport,
            lambda: ws.protocol.state is State.OPEN,
            self.node.scheduler,
            policy,
            on_slow,
        )

    async def run(self) -> None:
        sid = self.session.id
        log.info("connect session=%s peer=%s", sid, self.peer)
        self.node.sessions += 1
        self.node.connections_total += 1
        self.outbox.send_payload(encode(Welcome(session=sid, node=self.node.id)))
        try:
            async for frame in self.ws:
                if isinstance(frame, str):
                    await self._handle(frame)
                else:
                    await self._close(CloseCode.UNSUPPORTED_DATA, "binary frames are not supported")
                    break
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("connection failed session=%s", sid)
        finally:
            self._cleanup()
            if self._closing is not None:
                with contextlib.suppress(Exception):
                    await self._closing
            log.info(
                "disconnect session=%s peer=%s code=%s reason=%r",
                sid,
                self.peer,
                self.ws.close_code,
                self.ws.close_reason,
            )

    def _cleanup(self) -> None:
        # For whatever reason the connection ended, the session leaves every
        # room and the other members are told (PROTOCOL.md, "Semantics").
        self.outbox.close()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        for room in tuple(self.session.rooms):
            self.node.leave(room, self.session.id)
        self.session.rooms.clear()
        self.node.sessions -= 1

    async def _handle(self, frame: str) -> None:
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
                    await self._join(room, ref)
                case LeaveRoom(room=room, ref=ref):
                    self.node.leave(room, self.session.id)
                    self._reply_ok(ref)
        except Exception:
            log.exception("internal error session=%s", self.session.id)
            ref = getattr(request, "ref", None)
            self._reply_error(ProtocolError(ErrorCode.INTERNAL, "internal error", ref))

    async def _join(self, room: str, ref: Ref | None) -> None:
        try:
            await self.node.join(room, self.session.id, self.outbox)
        except BackendUnavailable as exc:
            log.warning("join failed session=%s room=%s: %s", self.session.id, room, exc)
            self._reply_error(ProtocolError(ErrorCode.UNAVAILABLE, "backend unavailable", ref))
            return
        self.session.joined(room)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._reply_ok(ref)

    def _published(self, ref: Ref | None, accepted: asyncio.Future[None]) -> None:
        if accepted.cancelled() or accepted.exception() is not None:
            log.warning("publish failed session=%s: %s", self.session.id, accepted)
            message = "the backend could not take the publish; nothing was sent"
            self._reply_error(ProtocolError(ErrorCode.UNAVAILABLE, message, ref))
        else:
            self._reply_ok(ref)

    def _reply_ok(self, ref: Ref | None) -> None:
        reply = ok(ref)
        if reply is not None:
            self.outbox.send_payload(reply.payload)

    def _reply_error(self, error: ProtocolError) -> None:
        self.node.errors[error.code.value] += 1
        log.info("error session=%s code=%s message=%s", self.session.id, error.code, error.message)
        self.outbox.send_payload(error_frame(error))

    def _slow_consumer(self, buffered: int) -> None:
        log.warning(
            "slow consumer session=%s peer=%s buffered=%d: closing",
            self.session.id,
            self.peer,
            buffered,
        )
        self.node.slow_consumers += 1
        self._close_soon(CloseCode.TRY_AGAIN_LATER, "slow consumer")

    def _idle_timeout(self) -> None:
        self._idle_timer = None
        log.info("idle session=%s peer=%s: no room joined; closing", self.session.id, self.peer)
        self._close_soon(CloseCode.POLICY_VIOLATION, "idle: no room joined")

    def _close_soon(self, code: int, reason: str) -> None:
        if self._closing is None:
            self.outbox.flush()
            self._closing = asyncio.get_running_loop().create_task(self.ws.close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        self.outbox.flush()
        await self.ws.close(code, reason)


def _peer(ws: ServerConnection) -> str:
    address = ws.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)
