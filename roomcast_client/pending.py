"""Requests in flight, matched to their replies by ``ref``. No I/O.

Refs come from one counter per client and are never reused, even across
reconnects, so a late reply can never be taken for another request's.

Invariants:
    * An entry stays until its reply arrives or its connection ends, even if
      the caller stopped waiting (a timeout): a late ``ok`` to a ``join`` or
      ``leave`` still updates the client's rooms.
    * A future is only completed if nobody cancelled it, so no exception is
      ever left unretrieved.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from protocol import Error, HistoryReply, Ok, Pong, PresenceReply
from roomcast_client.errors import error_for

__all__ = ["Kind", "Pending", "PendingRequests", "Reply"]

Reply = Ok | Pong | HistoryReply | PresenceReply
"""A successful reply."""


class Kind(Enum):
    """What a request asked for (decides what its reply changes)."""

    JOIN = "join"
    LEAVE = "leave"
    SAY = "say"
    PING = "ping"
    REFRESH = "refresh"
    HISTORY = "history"
    PRESENCE = "presence"


@dataclass(slots=True)
class Pending:
    """One request waiting for its reply."""

    ref: int
    kind: Kind
    room: str | None
    future: asyncio.Future[Reply] = field(repr=False)
    connection: object = field(repr=False)
    """The connection it was sent on (only its identity matters)."""


class PendingRequests:
    """The table of requests in flight of one client."""

    def __init__(self) -> None:
        self._refs = itertools.count(1)
        self._entries: dict[int, Pending] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, kind: Kind, room: str | None, connection: object) -> Pending:
        """Register a request about to be sent on ``connection``."""
        ref = next(self._refs)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        entry = Pending(ref, kind, room, future, connection)
        self._entries[ref] = entry
        return entry

    def discard(self, ref: int) -> None:
        """Forget a request that was never sent."""
        self._entries.pop(ref, None)

    def resolve(self, reply: Reply | Error) -> Pending | None:
        """Complete the request ``reply`` answers.

        Returns:
            The request's entry, or ``None`` if no request has that ref.
        """
        if not isinstance(reply.ref, int):
            return None
        entry = self._entries.pop(reply.ref, None)
        if entry is None:
            return None
        if not entry.future.done():
            if isinstance(reply, Error):
                entry.future.set_exception(error_for(reply.code, reply.message))
            else:
                entry.future.set_result(reply)
        return entry

    def end_all(self, outcome: Callable[[Pending], Reply | BaseException]) -> None:
        """Complete every request (the client has ended) with ``outcome``."""
        for connection in {id(e.connection): e.connection for e in self._entries.values()}.values():
            self.end_connection(connection, outcome)

    def end_connection(
        self, connection: object, outcome: Callable[[Pending], Reply | BaseException]
    ) -> list[Pending]:
        """Complete every request sent on ``connection``, which has ended.

        Args:
            connection: the connection that ended.
            outcome: the result (or exception) each request gets.

        Returns:
            The entries completed.
        """
        ended = [e for e in self._entries.values() if e.connection is connection]
        for entry in ended:
            del self._entries[entry.ref]
            result = outcome(entry)
            if entry.future.done():
                continue
            if isinstance(result, BaseException):
                entry.future.set_exception(result)
            else:
                entry.future.set_result(result)
        return ended
