"""A client's requests: written on the connection in use, matched to their
reply by ``ref`` (:mod:`roomcast_client.pending`), within a timeout that
also covers any wait for a reconnect; every failure is a typed error.

Which connection is in use is the supervisor's decision
(:mod:`roomcast_client.supervisor`): it hands one over with :meth:`Requests.use`
once it is welcomed and its rooms re-joined, and reports its end with
:meth:`Requests.connection_ended`.

Invariants:
    * ``_ready`` is set while ``_ws`` can take requests, or once the client
      has ended (``ended`` is then set); requests wait on it.
    * ``_rooms`` holds the rooms the broker confirmed with ``ok`` and that
      were not left since; a reconnect re-joins exactly these. The positions
      (:mod:`roomcast_client.positions`) learn of the same ``ok`` replies
      (joins, leaves, and says, whose positions the sender only learns there).
    * A request's outcome is its reply, the broker's typed refusal,
      :class:`RequestTimeout`, :class:`ConnectionLost` or :class:`ClientClosed`;
      nothing else escapes (PROTOCOL.md, "Error codes").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from protocol import ClientMessage, Error, Join, Ok, Position, encode
from roomcast_client.errors import ClientClosed, ConnectionLost, RequestTimeout
from roomcast_client.pending import Kind, Pending, PendingRequests, Reply
from roomcast_client.positions import Positions

__all__ = ["Build", "Requests", "join_request"]

log = logging.getLogger("roomcast_client")

Build = Callable[[int], ClientMessage]
"""Makes a request's frame once its ``ref`` is known."""

# A send that finds its connection already closed is retried on the next
# connection; more tries than this within one timeout means something is off.
_MAX_SEND_TRIES: Final = 5


def join_request(room: str, since: Position | None = None) -> Build:
    """The frame builder of a ``join`` of ``room``, recovering from ``since``
    if given (docs/HISTORY-PRESENCE.md, "Recovery")."""
    after: Position | msgspec.UnsetType = msgspec.UNSET if since is None else since
    return lambda ref: Join(room=room, ref=ref, since=after)


class _NotSent(Exception):
    """The request could not be written: its connection had already closed."""


class Requests:
    """The requests of one client, and the rooms their replies confirmed.

    Args:
        default_timeout: seconds a request may take when its caller gives none.
        positions: the client's room positions (a fresh one if ``None``).
    """

    def __init__(self, default_timeout: float, positions: Positions | None = None) -> None:
        self.default_timeout = default_timeout
        self.positions = positions or Positions()
        self.ended: ClientClosed | None = None
        """Why the client ended; ``None`` while it lives."""
        self._pending = PendingRequests()
        self._rooms: set[str] = set()
        self._ready = asyncio.Event()
        self._ws: ClientConnection | None = None

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms joined and not left."""
        return frozenset(self._rooms)

    @property
    def connected(self) -> bool:
        """Whether a request would be written right now."""
        return self.ended is None and self._ready.is_set()

    # --- what the supervisor tells -----------------------------------------------

    def use(self, ws: ClientConnection) -> None:
        """Send requests on ``ws`` from now on (welcomed, rooms re-joined)."""
        self._ws = ws
        self._ready.set()

    def connection_ended(self, ws: ClientConnection) -> None:
        """``ws`` has closed: requests wait for the next connection, and those
        in flight on ``ws`` end (a ``leave`` as done, the others with
        :class:`ConnectionLost`)."""
        if self.ended is None:
            self._ready.clear()
        if self._ws is ws:
            self._ws = None
        self._pending.end_connection(ws, self._outcome_of_lost)

    def forget(self, room: str) -> None:
        """``room`` is no longer joined (a re-join was refused)."""
        self._rooms.discard(room)
        self.positions.forget(room)

    def on_reply(self, reply: Reply | Error) -> None:
        """Complete the request ``reply`` answers; an ``ok`` to a join, a
        leave or a say updates :attr:`rooms` and the positions, even if its
        caller stopped waiting."""
        entry = self._pending.resolve(reply)
        if entry is None:
            if isinstance(reply, Error):
                log.warning("broker error for no request: %s %s", reply.code, reply.message)
            return
        if isinstance(reply, Ok) and entry.room is not None:
            if entry.kind is Kind.JOIN:
                self._rooms.add(entry.room)
                self.positions.joined(entry.room, reply)
            elif entry.kind is Kind.LEAVE:
                self.forget(entry.room)
            elif entry.kind is Kind.SAY:
                self.positions.said(entry.room, reply)

    def end(self, error: ClientClosed) -> None:
        """The client has ended: every waiting and later request fails with ``error``."""
        if self.ended is not None:
            return
        self.ended = error
        self._ready.set()  # wakes waiting requests, which then see `ended`
        self._pending.end_all(lambda _: ClientClosed(error.reason, error.code))

    def closed_error(self) -> ClientClosed:
        """A fresh copy of the error the client ended with (it has ended)."""
        ended = self.ended
        assert ended is not None
        return ClientClosed(ended.reason, ended.code)

    # --- making requests ---------------------------------------------------------

    # A request takes its own ``timeout`` (ruff's ASYNC109 prefers the
    # caller's asyncio.timeout): it covers the wait for a reconnect and ends
    # in a typed RequestTimeout.

    async def request(
        self,
        kind: Kind,
        room: str | None,
        build: Build,
        timeout: float | None,  # noqa: ASYNC109
    ) -> Reply:
        """Send a request and wait for its reply, across reconnects.

        Args:
            kind: what it asks for.
            room: the room it is about, if any.
            build: makes its frame from its ref.
            timeout: seconds allowed; :attr:`default_timeout` if ``None``.

        Returns:
            The reply: ``ok``, ``pong``, ``history`` or ``presence``.

        Raises:
            BrokerError: the broker refused (the subclass for its code).
            RequestTimeout: no reply (or no connection) within the timeout.
            ConnectionLost: the connection ended before the reply.
            ClientClosed: the client has ended.
        """
        limit = self.default_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                for _ in range(_MAX_SEND_TRIES):
                    ws = await self._wait_ready()
                    try:
                        return await self.exchange(ws, kind, room, build)
                    except _NotSent:
                        if self._ws is ws:
                            self._ready.clear()  # the reader will notice the close soon
                raise ConnectionLost(f"{kind.value}: every connection closed before sending")
        except TimeoutError:
            waited = "reply" if self.connected else "connection to the broker"
            raise RequestTimeout(f"{kind.value}: no {waited} within {limit} s") from None

    async def exchange(
        self, ws: ClientConnection, kind: Kind, room: str | None, build: Build
    ) -> Reply:
        """Send one request on ``ws`` (ready or not: re-joins use it) and wait
        for its reply, without a timeout of its own.

        Raises:
            BrokerError: the broker refused.
            ConnectionLost: ``ws`` ended before the reply.
            ClientClosed: the client ended before the reply.
            _NotSent: ``ws`` had closed before the request was written.
        """
        entry = self._pending.add(kind, room, ws)
        try:
            await ws.send(encode(build(entry.ref)), text=True)
        except ConnectionClosed:
            self._pending.discard(entry.ref)
            raise _NotSent from None
        except BaseException:
            # Cancelled mid-write: nobody will read this future's outcome.
            entry.future.cancel()
            raise
        return await entry.future

    async def _wait_ready(self) -> ClientConnection:
        for _ in range(3):
            if self.ended is not None:
                raise self.closed_error()
            if self._ready.is_set() and self._ws is not None:
                return self._ws
            self._ready.clear()
            await self._ready.wait()
        raise self.closed_error() if self.ended else ConnectionLost("no usable connection")

    def _outcome_of_lost(self, entry: Pending) -> Reply | BaseException:
        if entry.kind is Kind.LEAVE and entry.room is not None:
            # The broker removes a disconnected session from every room
            # (PROTOCOL.md, "Semantics"): the leave has happened.
            self.forget(entry.room)
            return Ok(ref=entry.ref)
        return ConnectionLost(
            f"{entry.kind.value}: the connection ended before the broker answered"
        )
