"""Many members of one room for a test, on the load generator's lean client.

Why not :class:`tests.support.wire.WireClient`: a room of S members gets
S²/2 ``joined`` events while it fills, and the ``websockets`` client spends
tens of µs on each, so 1,200 of them would take minutes. A crowd member
(:mod:`broker.bench.wsclient`) cuts frames in one loop, reads its replies
until its join's ``ok``, and then drops every frame unread: it keeps reading,
so the node never takes it for a slow consumer.

Invariant: a member's ``session`` is known once it is open; ``joined`` is
resolved (or failed) at most once, by the first reply to its join.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from broker.bench.wsclient import WsClient, open_client

__all__ = ["Crowd", "CrowdMember"]

_JOIN_REF = "crowd-join"


class CrowdMember:
    """One connection that joins one room and then ignores what it receives."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.session = ""
        self.client: WsClient | None = None
        self._welcome: asyncio.Future[None] = loop.create_future()
        self._joined: asyncio.Future[None] = loop.create_future()

    async def join(self, url: str, room: str) -> None:
        """Connect to ``url`` and join ``room``; the caller bounds it.

        Raises:
            RuntimeError: the join was refused.
            ConnectionError: the connection closed first.
        """
        self.client = await open_client(url, self._on_texts, self._on_close)
        await self._welcome
        self.client.send_text(json.dumps({"type": "join", "room": room, "ref": _JOIN_REF}).encode())
        await self._joined

    def close(self) -> None:
        """Close the connection (a close frame: the node announces ``left``)."""
        if self.client is not None:
            self.client.close()

    def _on_texts(self, payloads: list[bytes]) -> None:
        if self._joined.done():
            return  # joined/left of the others: not what a crowd member checks
        for payload in payloads:
            self._frame(json.loads(payload))

    def _frame(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "welcome" and not self._welcome.done():
            self.session = frame["session"]
            self._welcome.set_result(None)
        elif frame.get("ref") == _JOIN_REF and not self._joined.done():
            if frame["type"] == "ok":
                self._joined.set_result(None)
            else:
                self._joined.set_exception(RuntimeError(f"join refused: {frame}"))

    def _on_close(self, code: int) -> None:
        for future in (self._welcome, self._joined):
            if not future.done():
                future.set_exception(ConnectionError(f"closed with code {code}"))
                future.exception()  # retrieved: the waiter may already be gone


class Crowd:
    """Members of one room spread over nodes; close them with :meth:`close`."""

    def __init__(self) -> None:
        self.members: list[CrowdMember] = []

    @property
    def sessions(self) -> set[str]:
        """The session ids of every member."""
        return {member.session for member in self.members}

    async def join(
        self, urls: Sequence[str], room: str, size: int, concurrency: int = 32, within: float = 60.0
    ) -> None:
        """Add ``size`` members of ``room``, round-robin over ``urls``, with at
        most ``concurrency`` handshakes in flight, all within ``within`` s.

        Raises:
            TimeoutError: they were not all joined in time.
            RuntimeError, OSError: a member could not connect or join.
        """
        gate = asyncio.Semaphore(concurrency)
        fresh = [CrowdMember() for _ in range(size)]
        self.members.extend(fresh)

        async def one(index: int, member: CrowdMember) -> None:
            async with gate:
                await member.join(urls[index % len(urls)], room)

        async with asyncio.timeout(within):
            await asyncio.gather(*(one(i, m) for i, m in enumerate(fresh)))

    def close(self) -> None:
        """Close every member's connection."""
        for member in self.members:
            member.close()
