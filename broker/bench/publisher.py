"""A publisher: says numbered, timestamped messages through one member's
connection, as fast as its window allows or paced at a rate.

Invariant: at most ``window`` says are without a reply (``ok`` or ``error``).
"""

from __future__ import annotations

import asyncio
import time

import msgspec

import protocol
from broker.bench.member import WARM_UP_REF, Member
from broker.bench.messages import WARM_UP_SEQ, Body

__all__ = ["Publisher"]

_encode = msgspec.json.Encoder().encode


class Publisher:
    """Says ``messages`` numbered messages to one room, paced or windowed.

    Args:
        member: the connection it says through (and whose replies it counts).
        pub: its publisher id.
        messages: how many to say after the warm-up.
        window: says allowed without a reply.
        rate: says per second; None: as fast as the window allows.
        phase: seconds after the common start of its first say.
        body_size: bytes of each JSON body.
    """

    def __init__(
        self,
        member: Member,
        pub: int,
        messages: int,
        window: int,
        rate: float | None,
        phase: float,
        body_size: int,
    ) -> None:
        self.member = member
        self.pub = pub
        self.messages = messages
        self.window = window
        self.rate = rate
        self.phase = phase
        self.body_size = body_size
        self.says = 0
        self.acks = 0
        self.errors: dict[str, int] = {}
        self.first_send_ns = 0
        self.last_send_ns = 0
        self.last_ack_ns = 0
        self.max_lag_ns = 0
        self._in_flight = 0
        self._room: asyncio.Event = asyncio.Event()
        self._finished: asyncio.Event = asyncio.Event()
        self._lost = False
        member.publisher = self

    def say_warm_up(self) -> None:
        """Say the warm-up message. It takes no place in the window; its
        ``ok`` (ref :data:`~broker.bench.member.WARM_UP_REF`) only tells the
        member the offset it got (docs/HISTORY-PRESENCE.md, "Positions")."""
        self._send(self._say(WARM_UP_SEQ, time.monotonic_ns(), ref=WARM_UP_REF))

    async def run(self, start_ns: int) -> None:
        """Say every message, then wait for every reply (or the connection's end)."""
        first_ns = start_ns + int(self.phase * 1e9)
        interval_ns = int(1e9 / self.rate) if self.rate else 0
        await _sleep_until(first_ns)
        due = 0
        for seq in range(self.messages):
            if interval_ns:
                due = first_ns + seq * interval_ns
                if due - time.monotonic_ns() > 1_000_000:
                    await _sleep_until(due)
            while self._in_flight >= self.window and not self._lost:
                self._room.clear()
                await self._room.wait()
            if self._lost:
                break
            now = time.monotonic_ns()
            # Paced, a message's latency counts from when it was due: a broker
            # that holds the publisher back (full window) is not excused for
            # the messages it kept from being sent (no coordinated omission).
            stamp = min(due, now) if interval_ns else now
            self.max_lag_ns = max(self.max_lag_ns, now - stamp)
            self._in_flight += 1
            self._send(self._say(seq, stamp, ref=seq))
            self.says += 1
            if not self.first_send_ns:
                self.first_send_ns = now
            self.last_send_ns = now
        if self.says and not self._lost:
            await self._finished.wait()

    def replied(self, error_code: str | None) -> None:
        """Count one reply to a say (``ok`` when ``error_code`` is None)."""
        if error_code is None:
            self.acks += 1
        else:
            self.errors[error_code] = self.errors.get(error_code, 0) + 1
        self.last_ack_ns = time.monotonic_ns()
        self._in_flight -= 1
        self._room.set()
        if self.acks + sum(self.errors.values()) >= self.messages:
            self._finished.set()

    def connection_lost(self) -> None:
        """Stop waiting for replies that cannot come."""
        self._lost = True
        self._room.set()
        self._finished.set()

    def _send(self, frame: bytes) -> None:
        if self.member.client is not None:
            self.member.client.send_text(frame)

    def _say(self, seq: int, stamp: int, ref: int | str) -> bytes:
        """The ``say`` frame of message ``seq``, sent at ``stamp``."""
        body = msgspec.Raw(self._body(seq, stamp))
        return protocol.encode(protocol.Say(room=self.member.room, body=body, ref=ref))

    def _body(self, seq: int, now: int) -> bytes:
        body = _encode(Body(self.pub, seq, now))
        need = self.body_size - len(body)
        if need > 0:
            # The empty padding is already encoded; each "x" adds one byte.
            body = _encode(Body(self.pub, seq, now, "x" * need))
        return body


async def _sleep_until(deadline_ns: int) -> None:
    """Sleep until the monotonic clock reaches ``deadline_ns`` (pacing, not syncing)."""
    delay = (deadline_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)
