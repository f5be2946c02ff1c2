"""A raw protocol client for tests: plain JSON frames over ``websockets``.

The tests of the wire contract use this rather than the SDK, so that they
check exactly what goes over the socket.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

Frame = dict[str, Any]

REPLY_TYPES = frozenset({"ok", "error", "pong", "history", "presence"})
"""Frames that answer a request (docs/HISTORY-PRESENCE.md adds ``history`` and
``presence``)."""


class WireClient:
    """One WebSocket connection that keeps replies and events apart.

    Replies (``ok``, ``error``, ``pong``, ``history``, ``presence`` with a ``ref``) are
    matched to the request that carried the ref; everything else lands in
    ``events``.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.welcome: Frame = {}
        self.events: asyncio.Queue[Frame] = asyncio.Queue()
        self.replies: dict[Any, asyncio.Future[Frame]] = {}
        self._refs = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> WireClient:
        """Connect and wait for ``welcome``."""
        ws = await connect(url, **kwargs)
        client = cls(ws)
        client.welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert client.welcome["type"] == "welcome", client.welcome
        client._reader = asyncio.get_running_loop().create_task(client._read())
        return client

    @property
    def session(self) -> str:
        """This connection's session id."""
        return str(self.welcome["session"])

    async def _read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            ref = frame.get("ref")
            future = self.replies.pop(ref, None) if frame["type"] in REPLY_TYPES else None
            if future is not None and not future.done():
                future.set_result(frame)
            else:
                self.events.put_nowait(frame)

    async def request(self, type_: str, timeout: float = 5.0, **fields: Any) -> Frame:
        """Send a request with a fresh ``ref`` and return its reply."""
        ref = next(self._refs)
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self.replies[ref] = future
        await self.ws.send(json.dumps({"type": type_, "ref": ref, **fields}))
        return await asyncio.wait_for(future, timeout)

    async def send_raw(self, data: str | bytes) -> None:
        """Send any frame as it is."""
        await self.ws.send(data)

    async def join(self, room: str) -> Frame:
        """``join`` and require ``ok``."""
        reply = await self.request("join", room=room)
        assert reply["type"] == "ok", reply
        return reply

    async def say(self, room: str, body: Any) -> Frame:
        """``say`` and require ``ok``."""
        reply = await self.request("say", room=room, body=body)
        assert reply["type"] == "ok", reply
        return reply

    async def next_event(self, timeout: float = 5.0) -> Frame:
        """The next frame that is not a reply."""
        return await asyncio.wait_for(self.events.get(), timeout)

    async def expect(self, type_: str, timeout: float = 5.0, **fields: Any) -> Frame:
        """The next event, which must be of ``type_`` with these fields."""
        frame = await self.next_event(timeout)
        assert frame["type"] == type_, frame
        for key, value in fields.items():
            assert frame.get(key) == value, (key, frame)
        return frame

    async def expect_silence(self, seconds: float = 0.3) -> None:
        """Nothing arrives for ``seconds`` (used only to show an absence)."""
        try:
            frame = await asyncio.wait_for(self.events.get(), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame {frame}")

    async def close(self) -> None:
        """Close the connection and stop the reader."""
        await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def wait_closed(self, timeout: float = 10.0) -> None:
        """Wait until the server closes the connection."""
        await asyncio.wait_for(self.ws.wait_closed(), timeout)
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
