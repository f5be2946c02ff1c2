"""Fakes shared by the in-process tests: a clock, outboxes that record what
they are handed, a backend whose publishes the test settles by hand, and a
way to let already-scheduled callbacks run."""

from __future__ import annotations

import asyncio
import json
from functools import partial
from typing import Any

from websockets.datastructures import Headers

from broker.backends.base import (
    BackendUnavailable,
    DeliverBatch,
    Delivery,
    HistoryRead,
    Membership,
    Position,
    PresenceHooks,
    PresenceRead,
)
from broker.frames import text_frame
from broker.handshake import Opener
from broker.http import BodyReader, RequestHead
from broker.http_answer import HttpAnswer, json_answer
from broker.link import Link
from broker.outbox import WriteGuard
from broker.wire import Wire

__all__ = [
    "HANDSHAKE",
    "ClosedOutbox",
    "FakeClock",
    "FakeEdgeApp",
    "FakeRegistry",
    "FakeTransport",
    "FakeWire",
    "GatedBackend",
    "HeldBackend",
    "RecordingHandler",
    "RecordingOutbox",
    "client_frame",
    "connect",
    "next_turn",
]


class FakeClock:
    """Monotonic seconds that move only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def next_turn() -> None:
    """Return once every callback already scheduled with ``call_soon`` has run."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.call_soon(done.set_result, None)
    await done


class RecordingOutbox:
    """An outbox that keeps every frame it is handed."""

    def __init__(self) -> None:
        self.closed = False
        self.frames: list[bytes] = []
        self.payloads: list[bytes] = []

    def send(self, frame: bytes, payload: bytes) -> None:
        if not self.closed:
            self.frames.append(frame)
            self.payloads.append(payload)

    def send_payload(self, payload: bytes) -> None:
        self.send(text_frame(payload), payload)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def messages(self) -> list[dict[str, Any]]:
        """The payloads, decoded."""
        return [json.loads(payload) for payload in self.payloads]


class ClosedOutbox:
    """The outbox of a client that went away: nothing may be sent to it."""

    def __init__(self) -> None:
        self.closed = True

    def send(self, frame: bytes, payload: bytes) -> None:
        raise AssertionError("nothing may be sent to a closed outbox")

    def send_payload(self, payload: bytes) -> None:
        raise AssertionError("nothing may be sent to a closed outbox")

    def flush(self) -> None: ...

    def close(self) -> None: ...


class HeldBackend:
    """A backend without history that accepts every publish at once, or,
    while ``hold`` is set, keeps it pending until the test settles it. As the
    contract says, an accepted publish comes back to this node's ``deliver``
    (on the next loop turn) while the room is subscribed."""

    history_size = 0

    def __init__(self) -> None:
        self.published: list[tuple[str, str, bytes, asyncio.Future[Position | None]]] = []
        self.rooms: set[str] = set()
        self.tracked: list[tuple[Membership, bool]] = []
        self.hold = False
        self.deliver: DeliverBatch | None = None
        self._published_more: asyncio.Event | None = None
        self.hooks: PresenceHooks | None = None
        self.presence_down = False

    async def start(self, deliver: DeliverBatch, presence: PresenceHooks | None = None) -> None:
        self.deliver = deliver
        self.hooks = presence

    def track(self, membership: Membership, member: bool) -> None:
        self.tracked.append((membership, member))

    async def presence(self, room: str, limit: int) -> PresenceRead:
        """Who ``track`` says is in ``room``; unavailable while ``presence_down``."""
        if self.presence_down:
            raise BackendUnavailable("down")
        members: dict[str, str | None] = {}
        for (where, session, user), member in self.tracked:
            if where == room and member:
                members[session] = user
            elif where == room:
                members.pop(session, None)
        users = {user for user in members.values() if user is not None}
        listed = list(members.items())[:limit]
        return PresenceRead(len(members), len(users), listed, len(listed) < len(members))

    async def close(self) -> None:
        pass

    async def subscribe(self, room: str) -> None:
        self.rooms.add(room)

    def unsubscribe(self, room: str) -> None:
        self.rooms.discard(room)

    def publish(
        self,
        room: str,
        exclude: str,
        payload: bytes,
        published_at: float = 0.0,
        *,
        history: bool = True,
    ) -> asyncio.Future[Position | None]:
        accepted: asyncio.Future[Position | None] = asyncio.get_running_loop().create_future()
        accepted.add_done_callback(partial(self._echo, Delivery(room, exclude, payload)))
        if not self.hold:
            accepted.set_result(None)
        self.published.append((room, exclude, payload, accepted))
        if self._published_more is not None:
            self._published_more.set()
        return accepted

    def _echo(self, delivery: Delivery, accepted: asyncio.Future[Position | None]) -> None:
        if accepted.cancelled() or accepted.exception() is not None:
            return
        if self.deliver is not None and delivery.room in self.rooms:
            self.deliver((delivery,))

    async def read_history(
        self, room: str, after: int = 0, before: int | None = None, limit: int | None = None
    ) -> HistoryRead:
        return HistoryRead("", 0, [])

    async def rotate_epoch(self, room: str, stale_epoch: str) -> None:
        pass

    async def wait_published(self, count: int) -> None:
        """Return once ``count`` payloads in all were published."""
        while len(self.published) < count:
            self._published_more = asyncio.Event()
            await self._published_more.wait()

    def healthy(self) -> bool:
        return True

    def stats(self) -> dict[str, Any]:
        return {"backend": "held"}

    def types(self) -> list[str]:
        """The ``type`` of every payload published, in order."""
        return [json.loads(payload)["type"] for _, _, payload, _ in self.published]

    def accept_all(self) -> None:
        """Accept every publish still pending."""
        for *_, accepted in self.published:
            if not accepted.done():
                accepted.set_result(None)


class GatedBackend(HeldBackend):
    """A :class:`HeldBackend` whose subscribes wait until the test opens
    ``gate``, and fail while ``fail`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False
        self.calls: list[str] = []

    async def subscribe(self, room: str) -> None:
        self.calls.append(f"subscribe {room}")
        await self.gate.wait()
        if self.fail:
            raise BackendUnavailable("down")
        await super().subscribe(room)

    def unsubscribe(self, room: str) -> None:
        self.calls.append(f"unsubscribe {room}")
        super().unsubscribe(room)


class FakeWire:
    """The socket side of a :class:`~broker.connection.ClientConnection`,
    without a socket: it records every text message sent and every close.

    It reports permessage-deflate as negotiated, so the connection writes each
    message through :meth:`send_text` at once (no flush scheduler, no frames
    to parse).
    """

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closes: list[tuple[int, str]] = []
        self.closing = asyncio.Event()
        self.reading = True
        self.open = True
        self.peer = "127.0.0.1:1"
        self.close_code: int | None = None
        self.close_reason: str | None = None

    @property
    def guard(self) -> WriteGuard:
        raise AssertionError("a compressed connection writes through send_text only")

    def send_text(self, payload: bytes) -> None:
        self.sent.append(json.loads(payload))

    def is_open(self) -> bool:
        return self.open

    def compressed(self) -> bool:
        return True

    def close(self, code: int, reason: str = "") -> None:
        self.closes.append((code, reason))
        self.close_code, self.close_reason = code, reason
        self.closing.set()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def types(self) -> list[str]:
        """The ``type`` of every message sent, in order."""
        return [str(message["type"]) for message in self.sent]

    def replies(self) -> list[tuple[str, Any]]:
        """``(type, ref)`` of every reply (ok, error, pong) sent, in order."""
        return [
            (str(message["type"]), message.get("ref"))
            for message in self.sent
            if message["type"] in {"ok", "error", "pong"}
        ]


class FakeTransport(asyncio.Transport):
    """A socket whose peer reads nothing unless told to: every write is
    recorded and stays buffered until :meth:`drain`, with the flow control
    calls (``pause_writing``/``resume_writing``) asyncio would make.

    ``close`` and ``abort`` report ``connection_lost`` on the next loop turn,
    as asyncio's transports do.
    """

    def __init__(self, peer: tuple[str, int] = ("127.0.0.1", 4242)) -> None:
        super().__init__()
        self.peer = peer
        self.writes: list[bytes] = []
        self.buffered = 0
        self.high, self.low = 64 * 1024, 16 * 1024
        self.reading = True
        self.closing = False
        self.aborted = False
        self.writing_paused = False
        self.proto: asyncio.BaseProtocol | None = None

    @property
    def data(self) -> bytes:
        """Everything written, in order."""
        return b"".join(self.writes)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.proto = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.proto is not None
        return self.proto

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closing or not self.aborted, "write after abort"
        self.writes.append(bytes(data))
        self.buffered += len(data)
        if self.buffered > self.high and not self.writing_paused and self.proto is not None:
            self.writing_paused = True
            self.proto.pause_writing()

    def drain(self) -> None:
        """The peer read everything."""
        self.buffered = 0
        if self.writing_paused and self.proto is not None:
            self.writing_paused = False
            self.proto.resume_writing()

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high = 64 * 1024 if high is None else high
        self.low = self.high // 4 if low is None else low

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self._lose()

    def abort(self) -> None:
        self.aborted = True
        self._lose()

    def _lose(self) -> None:
        if not self.closing:
            self.closing = True
            protocol = self.proto
            if protocol is not None:
                asyncio.get_running_loop().call_soon(protocol.connection_lost, None)


HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
"""A valid WebSocket opening handshake request for ``/ws``."""


def client_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One frame as a client sends it: masked (with a zero mask, which leaves
    the payload as it is), payload up to 65535 bytes."""
    first = (0x80 if fin else 0) | opcode
    if len(payload) < 126:
        head = bytes((first, 0x80 | len(payload)))
    else:
        head = bytes((first, 0x80 | 126)) + len(payload).to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload


def connect(protocol: asyncio.BaseProtocol, transport: FakeTransport) -> None:
    """Make ``transport`` the connection of ``protocol``, as a server's accept does."""
    transport.set_protocol(protocol)
    protocol.connection_made(transport)


class RecordingHandler:
    """A :class:`~broker.wire.WireHandler` that records what its wire reports."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.messages: list[bytes] = []
        self.slow: list[int] = []
        self.closed_calls = 0

    def receive(self, data: bytes) -> None:
        self.messages.append(data)

    def close(self, code: int, reason: str) -> None:
        self.wire.close(code, reason)

    def slow_consumer(self, buffered: int) -> None:
        self.slow.append(buffered)

    def closed(self) -> None:
        self.closed_calls += 1


class FakeEdgeApp:
    """The node's endpoints as a test wants them: every handshake is admitted
    (unless ``refusal`` is set), ``GET``s get 200 ``ok``, and a ``POST`` body is
    answered 202 with its length once read."""

    def __init__(self) -> None:
        self.handlers: list[RecordingHandler] = []
        self.requests: list[RequestHead] = []
        self.bodies: list[bytes] = []
        self.refusal: HttpAnswer | None = None
        self.targets: list[str] = []

    def admit(self, target: str, headers: Headers) -> HttpAnswer | Opener:
        self.targets.append(target)
        return self.refusal if self.refusal is not None else self._open

    def _open(self, wire: Wire) -> RecordingHandler:
        handler = RecordingHandler(wire)
        self.handlers.append(handler)
        return handler

    def route(self, request: RequestHead) -> HttpAnswer | BodyReader:
        self.requests.append(request)
        return self._read if request.method == "POST" else HttpAnswer(200, b"ok", "text/plain")

    async def _read(self, body: bytes) -> HttpAnswer:
        self.bodies.append(body)
        return json_answer(202, {"length": len(body)})


class FakeRegistry:
    """The listener's set of live connections, as a plain set."""

    def __init__(self) -> None:
        self.links: set[Link] = set()

    def add(self, link: Link) -> None:
        self.links.add(link)

    def discard(self, link: Link) -> None:
        self.links.discard(link)
