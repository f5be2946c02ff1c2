"""One benchmark connection inside a worker: it joins one room and checks
every message it receives (a :class:`~broker.bench.publisher.Publisher` may
say messages through it).

Checking (PROTOCOL.md, "Semantics": every other member receives each message
exactly once, in the order one session said them): each member keeps, per
publisher of its room, the last sequence number seen. In a good run each
message is ``last + 1`` and costs one comparison; anything else switches that
stream to a set of seen numbers, which tells duplicates from late
(out-of-order) arrivals. Missing messages are what is expected minus the
distinct messages seen.

Positions (docs/HISTORY-PRESENCE.md, "Positions"): when the room keeps
history, each member also checks the offsets (:mod:`broker.bench.positions`):
every offset after its join position arrives once and in order, or was given
to one of its own says. In order, that is one comparison per message too.

Invariants:
    * ``Tally.pending`` is the number of distinct messages still expected by
      this worker's members; ``Tally.done`` is set when it reaches 0.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, assert_never

import msgspec

import protocol
from broker.bench.histogram import Histogram
from broker.bench.messages import WARM_UP_SEQ
from broker.bench.positions import OffsetCheck
from broker.bench.wsclient import WsClient, open_client

__all__ = ["WARM_UP_REF", "Delivery", "Member", "SayReplies", "Tally"]

_JOIN_REF = "join"
WARM_UP_REF = "warm"
"""The ``ref`` of a publisher's warm-up say: its ``ok`` tells the offset it got."""


class _Body(msgspec.Struct):
    """The part of :class:`~broker.bench.messages.Body` a receiver reads; the
    padding is skipped."""

    p: int
    s: int
    t: int


class Delivery(protocol.Message):
    """A ``message`` frame as the protocol defines it, with its body read as a
    benchmark :class:`_Body` instead of kept raw.

    A subclass of :class:`protocol.Message`, so it has the same tag and fields
    (``room``, ``from``, ``user``) and a frame that lacks one is refused as the
    protocol refuses it; only ``body`` is typed, which saves a second decode
    per delivery on the worker's hot path.
    """

    body: _Body  # type: ignore[assignment]


# Every server frame of protocol v1, with ``message`` read as a Delivery:
# msgspec matches the tag in C and builds the Struct in one pass.
_ServerFrame = (
    Delivery
    | protocol.Ok
    | protocol.Error
    | protocol.Welcome
    | protocol.Joined
    | protocol.Left
    | protocol.Pong
    | protocol.HistoryReply
)
_batch_decoder: msgspec.json.Decoder[list[_ServerFrame]] = msgspec.json.Decoder(list[_ServerFrame])
_frame_decoder: msgspec.json.Decoder[_ServerFrame] = msgspec.json.Decoder(_ServerFrame)


class SayReplies(Protocol):
    """What a member tells the publisher that says through it."""

    def replied(self, error_code: str | None) -> None:
        """A say got ``ok`` (``error_code`` None) or an ``error``."""

    def connection_lost(self) -> None:
        """No more replies will come."""


class Tally:
    """What every member of one worker saw, in one place (cheap to report)."""

    def __init__(self, expected: int, warm_expected: int) -> None:
        self.hist = Histogram()
        self.expected = expected
        self.pending = expected
        self.delivered_count = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.unexpected = 0
        self.closed = 0
        self.joins_with_position = 0
        self.errors: dict[str, int] = {}
        self.first_recv_ns = 0
        self.last_recv_ns = 0
        self.warm_pending = warm_expected
        self.done = asyncio.Event()
        self.warmed = asyncio.Event()
        if expected == 0:
            self.done.set()
        if warm_expected == 0:
            self.warmed.set()

    def add_delivered(self, count: int, now: int) -> None:
        """Count ``count`` new, valid deliveries received at ``now``.

        Their latencies are already in ``hist`` (see :meth:`Member.on_texts`).
        """
        self.delivered_count += count
        if not self.first_recv_ns:
            self.first_recv_ns = now
        self.last_recv_ns = now
        self.pending -= count
        if self.pending == 0:
            self.done.set()

    def warm_one(self) -> None:
        """Count a warm-up message."""
        self.warm_pending -= 1
        if self.warm_pending == 0:
            self.warmed.set()


class _Stream:
    """The messages one member got from one publisher."""

    __slots__ = ("last", "seen", "warm")

    def __init__(self) -> None:
        self.last = -1
        self.seen: set[int] | None = None
        self.warm = False


class Member:
    """One connection: joins ``room`` at ``url`` and checks what it receives.

    Args:
        url: the node to connect to.
        room: the room to join.
        publishers: ids of the publishers it must hear (itself excluded).
        messages: messages each publisher says.
        tally: the worker's counters.
        source: the local address to connect from (None: the kernel's choice).
    """

    def __init__(
        self,
        url: str,
        room: str,
        publishers: list[int],
        messages: int,
        tally: Tally,
        source: str | None = None,
    ) -> None:
        self.url = url
        self.source = source
        self.room = room
        self.messages = messages
        self.tally = tally
        self.streams = {pub: _Stream() for pub in publishers}
        self.offsets = OffsetCheck()
        self.publisher: SayReplies | None = None
        self.client: WsClient | None = None
        self.closing = False
        self._welcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def connect(self) -> int:
        """Connect, wait for ``welcome``, join; returns the time it took in ns.

        The caller bounds it with a timeout.

        Raises:
            RuntimeError: the join was refused.
            OSError, TimeoutError, HandshakeError: the connection failed.
        """
        start = time.monotonic_ns()
        self.client = await open_client(self.url, self.on_texts, self.on_close, self.source)
        await self._welcome
        self.client.send_text(protocol.encode(protocol.Join(room=self.room, ref=_JOIN_REF)))
        await self._joined
        return time.monotonic_ns() - start

    def close(self) -> None:
        """Close the connection (a normal close, not counted as a loss)."""
        self.closing = True
        if self.client is not None:
            self.client.close()

    # --- receiving ------------------------------------------------------------

    def on_texts(self, payloads: list[bytes]) -> None:
        """Handle the frames that arrived together (the hot path of a worker).

        The batch is decoded in one call, and in-order messages are counted
        inline: a function call per message would cost as much as the broker
        spends per delivery.
        """
        try:
            frames: list[_ServerFrame | None] = list(
                _batch_decoder.decode(b"[" + b",".join(payloads) + b"]")
            )
        except msgspec.DecodeError:
            frames = [self._decode_one(p) for p in payloads]
        now = time.monotonic_ns()
        streams = self.streams
        limit = self.messages
        hist = self.tally.hist
        counts = hist.counts
        new = total = 0
        top = hist.max
        offsets = self.offsets
        for frame in frames:
            if type(frame) is Delivery:
                offset = frame.offset
                if type(offset) is int:
                    if offset == offsets.last + 1:
                        offsets.last = offset
                    else:
                        offsets.jump(offset, frame.epoch)
                body = frame.body
                stream = streams.get(body.p)
                seq = body.s
                if (
                    stream is None
                    or seq != stream.last + 1
                    or stream.seen is not None
                    or seq >= limit
                ):
                    self._out_of_line(stream, seq, now, body.t)
                    continue
                stream.last = seq
                latency = (now - body.t) // 1000
                if latency < 128:
                    counts[latency if latency > 0 else 0] += 1
                else:
                    # Histogram.bucket_of, inlined.
                    shift = latency.bit_length() - 7
                    counts[(shift << 6) + (latency >> shift)] += 1
                if latency > top:
                    top = latency
                total += latency
                new += 1
            elif frame is not None:
                self._control(frame)
        if new:
            hist.count += new
            hist.total += total
            hist.max = max(hist.max, top)
            self.tally.add_delivered(new, now)

    def on_close(self, code: int) -> None:
        """The connection ended: fail pending waits; count it if we did not ask."""
        if not self.closing:
            self.tally.closed += 1
        failure = ConnectionError(f"connection closed with code {code}")
        for future in (self._welcome, self._joined):
            if not future.done():
                future.set_exception(failure)
                future.exception()  # retrieved: the waiter may already be gone
        if self.publisher is not None:
            self.publisher.connection_lost()

    def _decode_one(self, payload: bytes) -> _ServerFrame | None:
        try:
            return _frame_decoder.decode(payload)
        except msgspec.DecodeError:
            self.tally.unexpected += 1
            return None

    def _out_of_line(self, stream: _Stream | None, seq: int, now: int, sent: int) -> None:
        """Anything but the next in-order message: warm-ups, strangers, gaps, repeats."""
        tally = self.tally
        if stream is None or seq >= self.messages or seq < WARM_UP_SEQ:
            tally.unexpected += 1
            return
        if seq == WARM_UP_SEQ:
            if stream.warm:
                tally.duplicates += 1
            else:
                stream.warm = True
                tally.warm_one()
            return
        if stream.seen is None:
            # Until now every number arrived in order: 0..last were all seen.
            stream.seen = set(range(stream.last + 1))
        if seq in stream.seen:
            tally.duplicates += 1
            return
        stream.seen.add(seq)
        if seq < stream.last:
            tally.out_of_order += 1
        else:
            stream.last = seq
        tally.hist.record((now - sent) // 1000)
        tally.add_delivered(1, now)

    def _control(self, frame: _ServerFrame) -> None:
        match frame:
            case protocol.Ok(ref=ref, offset=offset, epoch=epoch):
                if ref == _JOIN_REF:
                    if not self._joined.done():
                        self._joined.set_result(None)
                    if isinstance(offset, int) and isinstance(epoch, str):
                        self.tally.joins_with_position += 1
                        self.offsets.joined(offset, epoch)
                    return
                if isinstance(offset, int) and isinstance(epoch, str):
                    self.offsets.said(offset, epoch)
                if isinstance(ref, int) and self.publisher is not None:
                    self.publisher.replied(None)
            case protocol.Error(ref=ref, code=code, message=message):
                if ref == _JOIN_REF:
                    if not self._joined.done():
                        self._joined.set_exception(RuntimeError(f"join refused: {code} {message}"))
                elif isinstance(ref, int) and self.publisher is not None:
                    self.publisher.replied(code)
                else:
                    self.tally.errors[code] = self.tally.errors.get(code, 0) + 1
            case protocol.Welcome():
                if not self._welcome.done():
                    self._welcome.set_result(None)
            case Delivery() | protocol.Joined() | protocol.Left() | protocol.Pong():
                pass
            case protocol.HistoryReply():
                self.tally.unexpected += 1  # never asked for
            case _:
                assert_never(frame)
