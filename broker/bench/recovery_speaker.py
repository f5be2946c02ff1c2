"""The ``recovery`` scenario's publisher: one connection to a surviving node,
in the coordinator, that says messages into every room and learns their
positions from the ``ok`` s (docs/HISTORY-PRESENCE.md, "Positions": the
``ok`` of a ``say`` carries the offset and epoch its message got).

Invariant: at most :data:`WINDOW` says are without a reply.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

import protocol
from broker.bench.messages import Body, RoomPosition
from broker.bench.wsclient import WsClient, open_client

__all__ = ["WINDOW", "Speaker"]

WINDOW = 64
"""Says in flight at once."""

_SPEAKER_ID = -1  # the publisher id in the bodies; no member checks it
_batch_decoder: msgspec.json.Decoder[list[protocol.ServerMessage]] = msgspec.json.Decoder(
    list[protocol.ServerMessage]
)
_encode = msgspec.json.Encoder().encode


class Speaker:
    """Says numbered messages into ``rooms`` through one connection.

    Use :meth:`open`; then :meth:`say_each` as often as needed; then :meth:`close`.
    """

    def __init__(self, rooms: list[str]) -> None:
        self.rooms = rooms
        self.client: WsClient | None = None
        self._seq = 0
        self._replies: dict[protocol.Ref, asyncio.Future[protocol.Ok]] = {}
        self._welcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(cls, url: str, rooms: list[str]) -> Speaker:
        """Connect to ``url`` and join every room. The caller bounds it.

        Raises:
            RuntimeError: a join was refused, or the node keeps no history.
            OSError, HandshakeError: the connection failed.
        """
        speaker = cls(rooms)
        speaker.client = await open_client(url, speaker.on_texts, speaker.on_close)
        await speaker._welcome
        for room in rooms:
            ok = await speaker._request(protocol.Join(room=room, ref=f"join:{room}"))
            if not isinstance(ok.offset, int):
                raise RuntimeError(
                    "the join's ok has no position: recovery needs history (--history-size > 0)"
                )
        return speaker

    async def say_each(self, count: int) -> dict[str, RoomPosition]:
        """Say ``count`` messages into every room; return each room's position
        after them (its last say's). The caller bounds it.

        Raises:
            RuntimeError: a say was refused, or its ``ok`` had no position.
            ConnectionError: the connection closed.
        """
        says = [room for room in self.rooms for _ in range(count)]
        positions: dict[str, RoomPosition] = {}
        for start in range(0, len(says), WINDOW):
            chunk = says[start : start + WINDOW]
            oks = await asyncio.gather(*(self._request(self._say(room)) for room in chunk))
            for room, ok in zip(chunk, oks, strict=True):
                if not isinstance(ok.offset, int) or not isinstance(ok.epoch, str):
                    raise RuntimeError(f"the ok of a say into {room} has no position")
                positions[room] = RoomPosition(ok.offset, ok.epoch)
        return positions

    def close(self) -> None:
        """Close the connection."""
        if self.client is not None:
            self.client.close()

    def _say(self, room: str) -> protocol.Say:
        self._seq += 1
        body = _encode(Body(_SPEAKER_ID, self._seq, time.monotonic_ns()))
        return protocol.Say(room=room, body=msgspec.Raw(body), ref=self._seq)

    async def _request(self, request: protocol.Join | protocol.Say) -> protocol.Ok:
        assert self.client is not None and request.ref is not None
        reply: asyncio.Future[protocol.Ok] = asyncio.get_running_loop().create_future()
        self._replies[request.ref] = reply
        self.client.send_text(protocol.encode(request))
        try:
            return await reply
        finally:
            del self._replies[request.ref]

    def on_texts(self, payloads: list[bytes]) -> None:
        """Hand each reply to its request; the room's traffic is not ours to check."""
        try:
            frames = _batch_decoder.decode(b"[" + b",".join(payloads) + b"]")
        except msgspec.DecodeError as exc:
            self._fail(RuntimeError(f"the server sent a frame the protocol refuses: {exc}"))
            return
        for frame in frames:
            match frame:
                case protocol.Ok(ref=ref) if ref in self._replies:
                    self._replies[ref].set_result(frame)
                case protocol.Error(ref=ref, code=code, message=message) if (
                    ref is not None and ref in self._replies
                ):
                    self._replies[ref].set_exception(RuntimeError(f"refused: {code} {message}"))
                case protocol.Welcome():
                    if not self._welcome.done():
                        self._welcome.set_result(None)
                case _:
                    pass

    def on_close(self, code: int) -> None:
        """Fail every request still waiting."""
        self._fail(ConnectionError(f"the publisher's connection closed with code {code}"))

    def _fail(self, failure: Exception) -> None:
        waiting: list[asyncio.Future[Any]] = [self._welcome, *self._replies.values()]
        for future in waiting:
            if not future.done():
                future.set_exception(failure)
                future.exception()
