"""The ``presence`` scenario's asker: one member of the room, in the
coordinator, that asks ``presence`` again and again and times each reply
(docs/HISTORY-PRESENCE.md, "Presence").

Each reply is judged by :func:`broker.bench.presence_replies.is_right`.

Invariants:
    * ``_sent`` holds the send time of every ``presence`` request without a
      reply yet; at most ``in_flight`` of them while :meth:`Asker.ask` runs.
    * A reply's time runs from its request's send to the arrival of the
      batch of frames that carried it, before it is decoded.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

import protocol
from broker.bench.presence_replies import Asked, is_right
from broker.bench.wsclient import WsClient, open_client

__all__ = ["Asker"]

_JOIN_REF = "join"
_Reply = tuple[int, protocol.PresenceReply | protocol.Error]
"""A reply and its time in ns."""
_batch_decoder: msgspec.json.Decoder[list[protocol.ServerMessage]] = msgspec.json.Decoder(
    list[protocol.ServerMessage]
)


class Asker:
    """One member of ``room`` that asks who is in it.

    Use :meth:`open`; :meth:`wait_message` to know the room went quiet;
    :meth:`ask`; then :meth:`close`.
    """

    def __init__(self, room: str) -> None:
        loop = asyncio.get_running_loop()
        self.room = room
        self.client: WsClient | None = None
        self._welcome: asyncio.Future[None] = loop.create_future()
        self._joined: asyncio.Future[None] = loop.create_future()
        self._message = asyncio.Event()
        self._sent: dict[protocol.Ref, int] = {}
        self._replied: asyncio.Queue[_Reply | ConnectionError] = asyncio.Queue()
        self._closed = False

    @classmethod
    async def open(cls, url: str, room: str) -> Asker:
        """Connect to ``url`` and join ``room``. The caller bounds it.

        Raises:
            RuntimeError: the join was refused.
            ConnectionError, OSError, HandshakeError: the connection failed.
        """
        asker = cls(room)
        asker.client = await open_client(url, asker.on_texts, asker.on_close)
        await asker._welcome
        asker.client.send_text(protocol.encode(protocol.Join(room=room, ref=_JOIN_REF)))
        await asker._joined
        return asker

    async def wait_message(self) -> None:
        """Wait until a ``message`` of the room arrived (the warm-up said after
        every join: the ``joined`` storm before it is over). The caller bounds it."""
        await self._message.wait()

    async def ask(self, requests: int, in_flight: int, members: int) -> Asked:
        """Ask ``presence`` ``requests`` times, ``in_flight`` at a time, and
        judge each reply against a room of ``members`` sessions. The caller
        bounds it.

        Raises:
            ConnectionError: the connection closed.
        """
        assert self.client is not None
        asked = Asked(first_ns=time.monotonic_ns())
        sent = 0
        while sent < min(in_flight, requests):
            sent += 1
            self._send(sent)
        for _ in range(requests):
            took_ns, reply = await self._next_reply()
            asked.hist.record(took_ns // 1000)
            match reply:
                case protocol.PresenceReply():
                    if is_right(reply, self.room, members):
                        asked.right += 1
                    else:
                        asked.wrong += 1
                case protocol.Error(code=code):
                    asked.errors[code] = asked.errors.get(code, 0) + 1
            if sent < requests:
                sent += 1
                self._send(sent)
        asked.last_ns = time.monotonic_ns()
        return asked

    def close(self) -> None:
        """Close the connection."""
        if self.client is not None:
            self.client.close()

    def _send(self, ref: int) -> None:
        assert self.client is not None
        payload = protocol.encode(protocol.Presence(room=self.room, ref=ref))
        self._sent[ref] = time.monotonic_ns()
        self.client.send_text(payload)

    async def _next_reply(self) -> _Reply:
        reply = await self._replied.get()
        if isinstance(reply, ConnectionError):
            raise reply
        return reply

    # --- receiving ------------------------------------------------------------

    def on_texts(self, payloads: list[bytes]) -> None:
        """Hand each reply, with its time, to :meth:`ask`; note the room's messages."""
        arrived = time.monotonic_ns()
        try:
            frames = _batch_decoder.decode(b"[" + b",".join(payloads) + b"]")
        except msgspec.DecodeError as exc:
            self._fail(ConnectionError(f"the server sent a frame the protocol refuses: {exc}"))
            return
        for frame in frames:
            self._frame(frame, arrived)

    def _frame(self, frame: protocol.ServerMessage, arrived: int) -> None:
        match frame:
            case protocol.PresenceReply(ref=ref) | protocol.Error(ref=ref) if ref in self._sent:
                self._replied.put_nowait((arrived - self._sent.pop(ref), frame))
            case protocol.Ok(ref=ref) if ref == _JOIN_REF:
                _resolve(self._joined, None)
            case protocol.Error(ref=ref) if ref == _JOIN_REF:
                _fail(self._joined, RuntimeError(f"join refused: {frame.code} {frame.message}"))
            case protocol.Welcome():
                _resolve(self._welcome, None)
            case protocol.Message():
                self._message.set()
            case _:
                pass  # joined/left of the members: not what the asker checks

    def on_close(self, code: int) -> None:
        """Fail whatever still waits for this connection."""
        self._fail(ConnectionError(f"the asker's connection closed with code {code}"))

    def _fail(self, failure: ConnectionError) -> None:
        if self._closed:
            return
        self._closed = True
        _fail(self._welcome, failure)
        _fail(self._joined, failure)
        # ask() waits on the queue: the failure ends it at once, instead of
        # leaving it to --timeout.
        self._replied.put_nowait(failure)


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], failure: Exception) -> None:
    if not future.done():
        future.set_exception(failure)
        future.exception()  # retrieved: the waiter may already be gone
