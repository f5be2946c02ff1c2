"""Supervision of a client's connection: opening it, reading it, and once it
ends, reconnecting, re-joining the rooms and telling the application.

One supervisor per client. Its task (started by :meth:`Supervisor.open`,
cancelled and awaited by :meth:`Supervisor.close`) owns the connection in
use and that connection's reader task; requests run in their callers' tasks
(:mod:`roomcast_client.requests`), events go to the router
(:mod:`roomcast_client.router`).

Whether to reconnect after a close is the protocol's table
(:func:`protocol.reconnect_rule`, shared with the server); how long to wait
is the :class:`~roomcast_client.backoff.Reconnect` policy.

Invariants:
    * ``_ws`` is the connection being read (``None`` between connections);
      requests get it only once welcomed and its rooms re-joined.
    * After a reconnect, :class:`Reconnected` is queued before any room event
      of the new connection, and requests resume only after it. Each room is
      re-joined with ``since`` its position (docs/HISTORY-PRESENCE.md,
      "Recovery"): the replayed messages, which come before the ``ok``, are
      held with the rest and routed after :class:`Reconnected`.
    * ``_unrecovered`` holds the rooms a re-join of the current reconnect
      found not recovered; the :class:`Reconnected` that ends it reports them.
    * :meth:`Supervisor.end` runs once; afterwards every request fails with
      :class:`ClientClosed` and every queue ends after its events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping, Sequence
from typing import assert_never

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from protocol import (
    CloseCode,
    Error,
    HistoryReply,
    Joined,
    Left,
    Message,
    Ok,
    Pong,
    Position,
    PresenceReply,
    ReconnectRule,
    Welcome,
    decode_server_message,
    reconnect_rule,
)
from roomcast_client.backoff import Reconnect
from roomcast_client.connection import OPEN_ERRORS, open_connection
from roomcast_client.errors import BrokerError, ClientClosed, ConnectFailed
from roomcast_client.events import Disconnected, Reconnected
from roomcast_client.pending import Kind
from roomcast_client.requests import Requests, join_request
from roomcast_client.router import Router

__all__ = ["Supervisor"]

log = logging.getLogger("roomcast_client")


class Supervisor:
    """The connections of one client, one after the other.

    Args:
        urls: the broker's WebSocket URLs; reconnects go to the next in turn.
        requests: the client's requests (told which connection to use).
        router: the client's event queues.
        policy: the reconnect policy; ``None`` ends the client with its
            first connection.
        open_timeout: seconds to open a connection and get ``welcome``.
        headers: extra HTTP headers for every handshake.
        token: a JSON Web Token sent as ``Authorization: Bearer``.

    Raises:
        ValueError: ``urls`` is empty.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        requests: Requests,
        router: Router,
        policy: Reconnect | None,
        open_timeout: float,
        headers: Mapping[str, str] | None,
        token: str | None,
    ) -> None:
        if not urls:
            raise ValueError("at least one URL is needed")
        self._urls = tuple(urls)
        self._next_url = 0
        self._requests = requests
        self._router = router
        self._policy = policy
        self._open_timeout = open_timeout
        self._headers = dict(headers) if headers else {}
        self.token = token
        """The token the next handshake presents (a refresh replaces it)."""
        self._rng = random.Random()
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._unrecovered: set[str] = set()
        self.session = ""
        self.node = ""
        self.user: str | None = None
        self.reconnects = 0

    @property
    def connection(self) -> ClientConnection | None:
        """The connection being read, if any."""
        return self._ws

    # --- lifecycle ---------------------------------------------------------------

    async def open(self) -> None:
        """Connect (trying each URL once, in order) and start supervising.

        Raises:
            ConnectFailed: no URL could be connected to; the last failure is
                chained, and a refused handshake's ``status`` and ``reason``
                are carried over (a refusal says more than a node that is down).
        """
        failure: BaseException | None = None
        refusal: ConnectFailed | None = None
        for index, url in enumerate(self._urls):
            try:
                ws, welcome = await open_connection(
                    url, open_timeout=self._open_timeout, headers=self._handshake_headers()
                )
            except OPEN_ERRORS as exc:
                failure = exc
                if isinstance(exc, ConnectFailed) and exc.status is not None:
                    refusal = exc
                continue
            self._next_url = (index + 1) % len(self._urls)
            self._attach(ws, welcome)
            self._requests.use(ws)
            self._task = asyncio.get_running_loop().create_task(
                self._supervise(), name=f"roomcast-client-{welcome.session}"
            )
            return
        cause = refusal or failure
        raise ConnectFailed(
            f"cannot connect to {', '.join(self._urls)}: {cause}",
            status=refusal.status if refusal else None,
            reason=refusal.reason if refusal else None,
        ) from cause

    async def close(self) -> None:
        """End the client quietly, stop supervising and close the connection."""
        self.end(ClientClosed("the client was closed"), quiet=True)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    def end(
        self, error: ClientClosed, *, quiet: bool = False, last: tuple[int, str] | None = None
    ) -> None:
        """End the client: fail waiting requests, end every queue after ``last``.

        Args:
            error: why; what requests raise from now on.
            quiet: the application closed the client: iteration ends without
                raising.
            last: the close code and reason of a last :class:`Disconnected`.
        """
        if self._requests.ended is not None:
            return
        self._requests.end(error)
        self._router.end(
            None if quiet else error,
            None if last is None else Disconnected(last[0], last[1], reconnecting=False),
        )

    # --- one connection ----------------------------------------------------------

    def _handshake_headers(self) -> dict[str, str]:
        if self.token is None:
            return self._headers
        return {**self._headers, "Authorization": f"Bearer {self.token}"}

    def _attach(self, ws: ClientConnection, welcome: Welcome) -> None:
        self._ws = ws
        self.session = welcome.session
        self.node = welcome.node
        self.user = None if isinstance(welcome.user, msgspec.UnsetType) else welcome.user
        self._reader = asyncio.get_running_loop().create_task(
            self._read(ws), name=f"roomcast-reader-{welcome.session}"
        )

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in ws:
                if isinstance(frame, bytes):
                    log.warning("ignoring a binary frame from the broker")
                    continue
                self._dispatch(frame)

    def _dispatch(self, frame: str) -> None:
        try:
            message = decode_server_message(frame)
        except msgspec.DecodeError:
            # Later protocol versions may add message types (PROTOCOL.md).
            log.debug("ignoring a frame this client does not know: %.200s", frame)
            return
        match message:
            case Ok() | Pong() | Error() | HistoryReply() | PresenceReply():
                self._requests.on_reply(message)
            case Message() | Joined() | Left():
                self._router.room_event(message)
            case Welcome():
                pass  # only the first frame of a connection is its welcome
            case _:
                assert_never(message)

    def _connection_ended(self, ws: ClientConnection) -> None:
        if self._ws is ws:
            self._ws = None
        self._router.drop_held()
        self._requests.connection_ended(ws)

    # --- reconnecting ------------------------------------------------------------

    async def _supervise(self) -> None:
        try:
            while True:
                ws, reader = self._ws, self._reader
                assert ws is not None and reader is not None
                await reader
                await ws.wait_closed()
                code = ws.close_code or CloseCode.ABNORMAL_CLOSURE
                reason = ws.close_reason or ""
                self._connection_ended(ws)
                rule = reconnect_rule(code)
                log.info("disconnected from %s: code %s %r", self.node, code, reason)
                if rule is ReconnectRule.STOP or self._policy is None:
                    why = (
                        "the broker refused this client"
                        if rule is ReconnectRule.STOP
                        else "reconnect is off"
                    )
                    self.end(ClientClosed(f"connection closed; {why}", code), last=(code, reason))
                    return
                self._router.disconnected(Disconnected(code, reason, reconnecting=True))
                await self._reconnect(self._policy, now=rule is ReconnectRule.AT_ONCE, code=code)
        except ClientClosed as exc:
            self.end(exc, last=(exc.code or CloseCode.ABNORMAL_CLOSURE, exc.reason))
        except Exception as exc:
            log.exception("roomcast client failed")
            self.end(
                ClientClosed(f"client failed: {exc!r}"),
                last=(CloseCode.ABNORMAL_CLOSURE, repr(exc)),
            )
            if self._ws is not None:
                await self._ws.close()
        finally:
            if self._reader is not None and not self._reader.done():
                self._reader.cancel()

    async def _reconnect(self, policy: Reconnect, *, now: bool, code: int) -> None:
        """Connect again and re-join; returns once ready, raises ClientClosed on giving up."""
        failures = 0
        last: BaseException | None = None
        while policy.max_attempts is None or failures < policy.max_attempts:
            if not (now and failures == 0):
                await asyncio.sleep(policy.delay(failures - 1 if now else failures, self._rng))
            url = self._urls[self._next_url]
            self._next_url = (self._next_url + 1) % len(self._urls)
            try:
                ws, welcome = await open_connection(
                    url, open_timeout=self._open_timeout, headers=self._handshake_headers()
                )
            except OPEN_ERRORS as exc:
                if isinstance(exc, ConnectFailed) and exc.status is not None:
                    # Refused for who the client is: it would be refused again.
                    raise ClientClosed(str(exc)) from exc
                failures, last = failures + 1, exc
                log.debug("reconnect to %s failed (%d): %s", url, failures, exc)
                continue
            if await self._rejoin(ws, welcome):
                return
            failures += 1
        raise ClientClosed(f"gave up reconnecting after {failures} attempts: {last}", code)

    async def _rejoin(self, ws: ClientConnection, welcome: Welcome) -> bool:
        """Re-join every room on the new ``ws``; whether it is ready for use."""
        self._router.hold()
        self._attach(ws, welcome)
        rooms = sorted(self._requests.rooms)
        since = {room: self._requests.positions.since(room) for room in rooms}
        results = await asyncio.gather(
            *(
                asyncio.wait_for(
                    self._requests.exchange(ws, Kind.JOIN, room, join_request(room, since[room])),
                    self._requests.default_timeout,
                )
                for room in rooms
            ),
            return_exceptions=True,
        )
        # A room not recovered stays so until a Reconnected reports it, even
        # if this attempt fails and the next one recovers from the position
        # its ``ok`` reset.
        self._unrecovered.update(
            room
            for room, result in zip(rooms, results, strict=True)
            if isinstance(result, Ok) and not _recovered(since[room], result)
        )
        failed: dict[str, BrokerError] = {}
        for room, result in zip(rooms, results, strict=True):
            if isinstance(result, BrokerError):
                failed[room] = result
                self._requests.forget(room)
            elif isinstance(result, BaseException):
                log.info("re-joining %s failed: %r; reconnecting again", room, result)
                await ws.close()
                if self._reader is not None:
                    await asyncio.gather(self._reader, return_exceptions=True)
                self._connection_ended(ws)
                return False
        self.reconnects += 1
        log.info("reconnected to %s as %s", welcome.node, welcome.session)
        rejoined = tuple(r for r in rooms if r not in failed)
        recovered = {room: room not in self._unrecovered for room in rejoined}
        self._unrecovered.clear()
        self._router.release(
            Reconnected(welcome.session, welcome.node, rejoined, failed, recovered)
        )
        self._requests.use(ws)
        return True


def _recovered(since: Position | None, ok: Ok) -> bool:
    """Whether a re-join from ``since`` lost nothing ("Recovery"): the broker
    said so, in the same epoch. A room without history never is."""
    return since is not None and ok.recovered is True and ok.epoch == since.epoch
