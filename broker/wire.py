"""One open WebSocket's I/O: a thin asyncio driver around websockets' Sans-I/O
:class:`ServerProtocol` (bytes in, events and bytes out).

Why not websockets' own asyncio server: memory (a connection is one small
object with slots and the protocol state, no task or queue of its own), CPU (a
frame is handled in ``data_received`` without waking a task) and keepalive
(one timer per node, :mod:`broker.listener`, pings the quiet connections).

The WebSocket rules (framing, masking, control frames, the closing handshake,
permessage-deflate) stay websockets'. This module adds what a Sans-I/O
protocol leaves to its driver: UTF-8 validation of text messages (RFC 6455,
section 8.1), reassembly of fragmented messages under the size limit, the
close timer, and back-pressure.

Invariants:
    * Every byte written for the client (the handshake response, pongs that
      websockets answers itself, close frames, replies and fan-out frames)
      passes :attr:`Wire.guard`, the slow-consumer policy; only the close frame
      that cuts a client off follows a refused write.
    * While the write buffer is above the high-water mark the socket is not
      read (``pause_writing`` pauses reading; ``resume_writing`` resumes it):
      a client that sends and never reads cannot make the node queue.
    * The handler's ``closed`` is called exactly once, when the TCP connection
      is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final, Protocol

from websockets.frames import Close, Frame, Opcode
from websockets.protocol import OPEN, SEND_EOF
from websockets.server import ServerProtocol

from broker.link import Registry, WireSettings
from broker.outbox import WriteGuard
from protocol import CloseCode

__all__ = ["Wire", "WireHandler"]

log = logging.getLogger("broker.wire")

# Why reading is paused: the application's backlog, or a full write buffer.
_HELD_BY_APP: Final = 1
_HELD_BY_WRITES: Final = 2


class WireHandler(Protocol):
    """The application's side of one open WebSocket."""

    def receive(self, data: bytes) -> None:
        """A complete, UTF-8-valid text message arrived."""
        ...

    def close(self, code: int, reason: str) -> None:
        """End the session: write what is queued, then close with ``code``."""
        ...

    def slow_consumer(self, buffered: int) -> None:
        """The slow-consumer policy cut the client off (the wire closes with 1013)."""
        ...

    def closed(self) -> None:
        """The connection is gone."""
        ...


class Wire(asyncio.Protocol):
    """One open WebSocket, the transport's protocol after the handshake.

    Args:
        ws: the protocol state, OPEN (the 101 response waits in it).
        transport: the connection's transport.
        settings: shared limits.
        registry: the set of live connections.
        peer: ``host:port`` of the client, for logs.
    """

    __slots__ = (
        "_fragments",
        "_held",
        "_registry",
        "_timer",
        "guard",
        "handler",
        "last_seen",
        "peer",
        "ping_sent",
        "settings",
        "transport",
        "ws",
    )

    def __init__(
        self,
        ws: ServerProtocol,
        transport: asyncio.Transport,
        settings: WireSettings,
        registry: Registry,
        peer: str,
    ) -> None:
        self.ws = ws
        self.transport: asyncio.Transport | None = transport
        self.settings = settings
        self._registry = registry
        self.peer = peer
        self.handler: WireHandler | None = None
        loop = asyncio.get_running_loop()
        self.last_seen = loop.time()
        self.ping_sent = 0.0
        self._fragments: bytearray | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._held = 0
        policy = settings.slow_consumer
        # pause_writing/resume_writing at the policy's marks: back-pressure.
        transport.set_write_buffer_limits(high=policy.high_water, low=policy.high_water // 2)
        self.guard = WriteGuard(loop, transport, policy, self._slow_consumer)

    def start(self, opener: Callable[[Wire], WireHandler], rest: bytes) -> None:
        """Take the transport over, send the 101, open the session, and read
        ``rest`` (frames that came with the request head)."""
        transport = self.transport
        assert transport is not None
        self._registry.add(self)
        transport.set_protocol(self)
        self.handler = opener(self)
        # The 101 response waits in the protocol until now: the opener's
        # welcome (sent with send_text) leaves in the same write.
        self._flush()
        if rest:
            self.data_received(rest)

    # --- asyncio.Protocol ----------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Feed the WebSocket protocol and handle what it parsed."""
        try:
            self.last_seen = asyncio.get_running_loop().time()
            self.ping_sent = 0.0
            self.ws.receive_data(data)
            self._events()
        except Exception:
            # A bug must cost this connection only, never the node.
            log.exception("connection failed peer=%s", self.peer)
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell the handler, once."""
        self._cancel_timer()
        self.guard.close()
        self._registry.discard(self)
        # Nothing may be written after this: uvloop raises on a closed handle.
        self.transport = None
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.closed()

    def pause_writing(self) -> None:
        """The write buffer passed the high-water mark: stop reading."""
        self._hold(_HELD_BY_WRITES)

    def resume_writing(self) -> None:
        """The buffer drained below the low-water mark: the client caught up."""
        self.guard.drained()
        self._release(_HELD_BY_WRITES)

    # --- the application's side ----------------------------------------------

    def is_open(self) -> bool:
        """Whether messages may still be sent."""
        return self.transport is not None and self.ws.state is OPEN

    def send_text(self, payload: bytes) -> None:
        """Frame (and compress, if negotiated) and write one text message now."""
        if self.ws.state is OPEN:
            self.ws.send_text(payload)
            self._flush()

    def compressed(self) -> bool:
        """Whether an extension (permessage-deflate) was negotiated."""
        return bool(self.ws.extensions)

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake; abort if it takes over ``close_timeout``."""
        if self.ws.state is not OPEN or self.transport is None:
            return
        self.ws.send_close(code, reason)
        self._flush()
        self._arm_close_timer()

    def ping(self) -> None:
        """Send a keepalive ping."""
        if self.ws.state is OPEN:
            self.ping_sent = asyncio.get_running_loop().time()
            self.ws.send_ping(b"")
            self._flush()

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        """Stop reading from the socket (the application is busy)."""
        self._hold(_HELD_BY_APP)

    def resume_reading(self) -> None:
        """Read from the socket again (unless the write buffer is full)."""
        self._release(_HELD_BY_APP)

    @property
    def close_code(self) -> int:
        """The code of the close frame that ended the connection: the first one
        sent or received; 1006 if the TCP connection ended without one."""
        frame = self._close_frame()
        return CloseCode.ABNORMAL_CLOSURE if frame is None else frame.code

    @property
    def close_reason(self) -> str:
        """The reason that goes with :attr:`close_code`."""
        frame = self._close_frame()
        return "" if frame is None else frame.reason

    # --- internals -----------------------------------------------------------

    def _close_frame(self) -> Close | None:
        ws = self.ws
        sent, received = ws.close_sent, ws.close_rcvd
        if received is not None and (sent is None or ws.close_rcvd_then_sent):
            return received
        return sent

    def _hold(self, reason: int) -> None:
        transport = self.transport
        if not self._held and transport is not None and not transport.is_closing():
            transport.pause_reading()
        self._held |= reason

    def _release(self, reason: int) -> None:
        if not self._held & reason:
            return
        self._held &= ~reason
        transport = self.transport
        if not self._held and transport is not None and not transport.is_closing():
            transport.resume_reading()

    def _events(self) -> None:
        ws = self.ws
        for event in ws.events_received():
            if not isinstance(event, Frame):
                continue
            if ws.state is not OPEN:
                break  # failed (1007, 1009) or closing: nothing more is handled
            opcode = event.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.CONT:
                data = self._reassemble(bytes(event.data), event.fin)
                if data is not None and self.handler is not None:
                    self.handler.receive(data)
            elif opcode is Opcode.BINARY:
                self.close(CloseCode.UNSUPPORTED_DATA, "binary frames are not supported")
                break
        # Pongs websockets wrote for pings, and close frames: under the guard too.
        self._flush()

    def _reassemble(self, data: bytes, fin: bool) -> bytes | None:
        fragments = self._fragments
        if fin and fragments is None:
            message = data
        else:
            # A bytearray: a flood of tiny continuation frames costs O(1) each.
            if fragments is None:
                fragments = self._fragments = bytearray()
            fragments += data
            if len(fragments) > self.settings.max_size:
                self._fragments = None
                self.ws.fail(CloseCode.MESSAGE_TOO_BIG, "message too big")
                return None
            if not fin:
                return None
            message = bytes(fragments)
            self._fragments = None
        # RFC 6455, section 8.1: a text message must be valid UTF-8.
        if not message.isascii():
            try:
                message.decode()
            except UnicodeDecodeError:
                self.ws.fail(CloseCode.INVALID_DATA, "invalid UTF-8")
                return None
        return message

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        guard = self.guard
        # Every call that can take the protocol out of OPEN (send_close, fail,
        # a close frame received) is followed by this flush: from here on the
        # outbox writes no more fan-out frames.
        if self.ws.state is not OPEN:
            guard.open = False
        chunks = self.ws.data_to_send()
        if not chunks:
            return
        # SEND_EOF (an empty chunk) comes last, if at all.
        eof = chunks[-1] is SEND_EOF or not chunks[-1]
        if eof:
            chunks.pop()
        if chunks:
            # One write for all of it (the 101 and the welcome, a pong and a
            # close frame): a write is the costly part of a small message.
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            if guard.tripped:
                # Cut off: only the close frame that says why is still written.
                transport.write(data)
            elif not guard.write(data):
                return  # refused: the cut-off already wrote its close frame
        if eof:
            # close() waits for the buffer to drain: a peer that does not
            # read would hold the connection forever without this timer.
            transport.close()
            if self._timer is None:
                self._arm_close_timer()

    def _slow_consumer(self, buffered: int) -> None:
        self._hold(_HELD_BY_WRITES)
        if self.handler is not None:
            self.handler.slow_consumer(buffered)
        self.close(CloseCode.TRY_AGAIN_LATER, "slow consumer")

    def _arm_close_timer(self) -> None:
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(self.settings.close_timeout, self.abort)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
