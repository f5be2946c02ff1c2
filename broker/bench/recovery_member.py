"""One client of the ``recovery`` scenario: it joins a room on one node,
follows the room's position, and once that node is gone rejoins on another
with ``since`` and checks what comes back.

The check is the contract's (docs/HISTORY-PRESENCE.md, "Recovery: join with
since"): when history still holds every message after ``since``, those
messages come first, in offset order, then the ``ok`` with
``"recovered": true``; so the messages before the ``ok`` must be exactly the
offsets ``since.offset + 1`` to the room's current offset, in the current
epoch, and the ``ok`` must carry that position.

Invariants:
    * ``offset``/``epoch`` is the room's position as this client knows it:
      the join ``ok``'s, then each message's; ``offset`` is -1 before the
      first join ``ok`` with a position.
    * While a rejoin waits for its ``ok``, ``_replayed`` holds the positions
      of the room's messages received since the join was sent, in order of
      arrival; otherwise it is None.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Sequence

import msgspec

import protocol
from broker.bench.messages import RoomPosition
from broker.bench.wsclient import WsClient, open_client

__all__ = ["Rejoiner", "Verdict", "judge"]

_JOIN_REF = "join"
_REJOIN_REF = "rejoin"
_batch_decoder: msgspec.json.Decoder[list[protocol.ServerMessage]] = msgspec.json.Decoder(
    list[protocol.ServerMessage]
)


class Verdict(enum.Enum):
    """How a rejoin with ``since`` went."""

    RECOVERED = "recovered"
    """``recovered: true`` after exactly the missing messages, in order."""
    NOT_RECOVERED = "not_recovered"
    """The ``ok`` did not say ``recovered: true``, and nothing was replayed."""
    WRONG = "wrong"
    """``recovered: true`` but the replay or the ``ok``'s position was not
    right; or messages were replayed before an ``ok`` without it."""


def judge(
    since: RoomPosition,
    replayed: Sequence[RoomPosition],
    ok: protocol.Ok,
    expected: RoomPosition,
) -> Verdict:
    """The verdict on a rejoin (no I/O).

    Args:
        since: the position the client rejoined with.
        replayed: the positions of the messages that came before the ``ok``.
        ok: the join's ``ok``.
        expected: the room's position when the client rejoined (the end of
            the replay).
    """
    if ok.recovered is not True:
        # "Otherwise ... no message is replayed, and the ok says recovered: false."
        return Verdict.WRONG if replayed else Verdict.NOT_RECOVERED
    if (ok.offset, ok.epoch) != (expected.offset, expected.epoch):
        return Verdict.WRONG
    missing = range(since.offset + 1, expected.offset + 1)
    if since.epoch != expected.epoch or len(replayed) != len(missing):
        return Verdict.WRONG
    for position, offset in zip(replayed, missing, strict=True):
        if position.offset != offset or position.epoch != expected.epoch:
            return Verdict.WRONG
    return Verdict.RECOVERED


class Rejoiner:
    """One client: joins ``room`` at ``url``; later rejoins elsewhere with ``since``."""

    def __init__(self, url: str, room: str) -> None:
        self.url = url
        self.room = room
        self.offset = -1
        self.epoch = ""
        self.client: WsClient | None = None
        self.closed = asyncio.Event()
        self.ok_ns = 0
        """When the last join's ``ok`` arrived (``time.monotonic_ns()``)."""
        self.replayed_count = 0
        """Messages received before the rejoin's ``ok``."""
        self._moved = asyncio.Event()
        self._garbled = False
        self._generation = 0
        self._replayed: list[RoomPosition] | None = None
        loop = asyncio.get_running_loop()
        self._welcome: asyncio.Future[None] = loop.create_future()
        self._ok: asyncio.Future[protocol.Ok] = loop.create_future()

    async def connect(self) -> int:
        """Connect, join, and take the room's position from the ``ok``; returns
        the time it took in ns. The caller bounds it with a timeout.

        Raises:
            RuntimeError: the join was refused, or its ``ok`` had no position
                (the nodes keep no history).
            OSError, HandshakeError: the connection failed.
        """
        start = time.monotonic_ns()
        ok = await self._join(self.url, protocol.Join(room=self.room, ref=_JOIN_REF))
        if not isinstance(ok.offset, int) or not isinstance(ok.epoch, str):
            raise RuntimeError("the join's ok has no position: is history off (--history-size 0)?")
        self._move(ok.offset, ok.epoch)
        return time.monotonic_ns() - start

    def reached(self, position: RoomPosition) -> bool:
        """Whether this client has seen the room up to ``position``."""
        return self.epoch == position.epoch and self.offset >= position.offset

    async def wait_position(self, position: RoomPosition) -> None:
        """Wait until :meth:`reached` ``position``. The caller bounds it."""
        while not self.reached(position):
            self._moved.clear()
            await self._moved.wait()

    async def rejoin(self, url: str, expected: RoomPosition) -> Verdict:
        """Reconnect to ``url`` and join with ``since`` = the last position.

        The caller bounds it with a timeout.

        Raises:
            RuntimeError: the rejoin was refused, or no position was known.
            OSError, HandshakeError: the connection failed.
        """
        if self.offset < 0:
            raise RuntimeError("no position to recover from")
        since = RoomPosition(self.offset, self.epoch)
        join = protocol.Join(
            room=self.room,
            ref=_REJOIN_REF,
            since=protocol.Position(offset=since.offset, epoch=since.epoch),
        )
        self._replayed = []
        try:
            ok = await self._join(url, join)
            replayed = self._replayed
        finally:
            self._replayed = None
        self.replayed_count = len(replayed)
        if self._garbled:
            return Verdict.WRONG
        return judge(since, replayed, ok, expected)

    def close(self) -> None:
        """Close the connection, if open."""
        if self.client is not None:
            self.client.close()

    async def _join(self, url: str, join: protocol.Join) -> protocol.Ok:
        loop = asyncio.get_running_loop()
        self._welcome = loop.create_future()
        self._ok = loop.create_future()
        self.closed.clear()
        # A close of an earlier connection must not fail this one's waits.
        self._generation += 1
        generation = self._generation
        self.client = await open_client(
            url, self.on_texts, lambda code: self.on_close(code, generation)
        )
        await self._welcome
        self.client.send_text(protocol.encode(join))
        return await self._ok

    def _move(self, offset: int, epoch: str) -> None:
        self.offset, self.epoch = offset, epoch
        self._moved.set()

    # --- receiving ------------------------------------------------------------

    def on_texts(self, payloads: list[bytes]) -> None:
        """Handle the frames that arrived together."""
        try:
            frames = _batch_decoder.decode(b"[" + b",".join(payloads) + b"]")
        except msgspec.DecodeError:
            self._garbled = True
            return
        for frame in frames:
            self._frame(frame)

    def _frame(self, frame: protocol.ServerMessage) -> None:
        match frame:
            case protocol.Message(room=room, offset=offset, epoch=epoch) if room == self.room:
                if isinstance(offset, int) and isinstance(epoch, str):
                    if self._replayed is not None and not self._ok.done():
                        self._replayed.append(RoomPosition(offset, epoch))
                    self._move(offset, epoch)
            case protocol.Ok(ref=ref) if ref in (_JOIN_REF, _REJOIN_REF):
                self.ok_ns = time.monotonic_ns()
                if not self._ok.done():
                    self._ok.set_result(frame)
            case protocol.Error(ref=ref, code=code, message=message) if ref in (
                _JOIN_REF,
                _REJOIN_REF,
            ):
                if not self._ok.done():
                    self._ok.set_exception(RuntimeError(f"join refused: {code} {message}"))
            case protocol.Welcome():
                if not self._welcome.done():
                    self._welcome.set_result(None)
            case _:
                pass  # joined/left of others, pongs: not what this client checks

    def on_close(self, code: int, generation: int) -> None:
        """Connection number ``generation`` ended: if it is the current one,
        fail what still waits for it."""
        if generation != self._generation:
            return
        failure = ConnectionError(f"connection closed with code {code}")
        for future in (self._welcome, self._ok):
            if not future.done():
                future.set_exception(failure)
                future.exception()  # retrieved: the waiter may already be gone
        self.closed.set()
