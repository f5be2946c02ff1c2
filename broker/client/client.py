"""The SDK's client: one logical connection to a broker that outlives the
WebSocket connections under it.

Tasks: the supervisor (one per client, started by :meth:`Client.open`,
cancelled and awaited by :meth:`Client.close`) owns the current connection,
its reader task and reconnecting. Requests run in their callers' tasks.

Invariants:
    * ``_ready`` is set when ``_ws`` is welcomed and its rooms re-joined, or
      when the client has ended (``_ended`` is then set); requests wait on it.
    * ``_rooms`` holds the rooms the broker confirmed with ``ok`` and that
      were not left since; a reconnect re-joins exactly these.
    * While ``_holding`` is not ``None`` (re-joining), room events of the new
      connection are held back, so that :class:`Reconnected` comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, assert_never

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from broker.client.backoff import After, Reconnect, after_close
from broker.client.connection import OPEN_ERRORS, open_connection, refused_status
from broker.client.errors import (
    BrokerError,
    ClientClosed,
    ConnectFailed,
    ConnectionLost,
    RequestTimeout,
)
from broker.client.events import Disconnected, Event, Reconnected, RoomEvent
from broker.client.inbox import Inbox
from broker.client.requests import Kind, Pending, PendingRequests, Reply
from broker.client.rooms import RoomView
from protocol import (
    ClientMessage,
    Error,
    Join,
    Joined,
    Leave,
    Left,
    Message,
    Ok,
    Ping,
    Pong,
    Refresh,
    Say,
    Welcome,
    decode_server_message,
    encode,
)

__all__ = ["Client", "connect"]

log = logging.getLogger("broker.client")

# A send that finds its connection already closed is retried on the next
# connection; more tries than this within one timeout means something is off.
_MAX_SEND_TRIES: Final = 5
_ABNORMAL_CLOSURE: Final = 1006


def _join_request(room: str) -> Callable[[int], ClientMessage]:
    return lambda ref: Join(room=room, ref=ref)


class _NotSent(Exception):
    """The request could not be written: its connection had already closed."""


class Client:
    """A client of a roomcast broker; create it with :func:`connect`.

    Requests (:meth:`join`, :meth:`leave`, :meth:`say`, :meth:`ping`) may be
    made from any number of tasks at once. Events are read with ``async for
    event in client`` (or :meth:`receive`, or a :meth:`room` view); unread
    ones wait in a bounded queue that drops its oldest when full (see
    :mod:`broker.client.inbox`). When the connection drops, the client
    reconnects, re-joins its rooms and emits :class:`Reconnected`, as
    :mod:`broker.client.backoff` rules.

    Args:
        urls: the broker's WebSocket URL, or several (nodes of one cluster):
            reconnects go to the next one in turn.
        request_timeout: default seconds a request may take, including any
            wait for a reconnect.
        reconnect: the reconnect policy; ``True`` for the default one,
            ``False`` to end the client when its connection ends.
        max_queue: events kept for the application at most (per queue: the
            client's and each room view's); beyond, the oldest is dropped.
        open_timeout: seconds allowed to open a connection and get ``welcome``.
        headers: extra HTTP headers for every handshake.
        token: a JSON Web Token for brokers that require one, sent as
            ``Authorization: Bearer`` on every handshake (:meth:`refresh`
            replaces it).
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        request_timeout: float = 10.0,
        reconnect: Reconnect | bool = True,
        max_queue: int = 1000,
        open_timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> None:
        self._urls = (urls,) if isinstance(urls, str) else tuple(urls)
        if not self._urls:
            raise ValueError("at least one URL is needed")
        self._next_url = 0
        self._request_timeout = request_timeout
        self._policy = Reconnect() if reconnect is True else (reconnect or None)
        self._max_queue = max_queue
        self._open_timeout = open_timeout
        self._headers = dict(headers) if headers else {}
        self._token = token
        self._rng = random.Random()
        self._inbox: Inbox[Event] = Inbox(max_queue, "roomcast client queue")
        self._views: dict[str, set[RoomView]] = {}
        self._pending = PendingRequests()
        self._rooms: set[str] = set()
        self._ready = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._holding: list[RoomEvent] | None = None
        self._ended: ClientClosed | None = None
        self._end_error: ClientClosed | None = None  # what iteration raises at the end
        self._session = ""
        self._node = ""
        self._user: str | None = None
        self._reconnects = 0
        self._opened = False

    # --- state ---------------------------------------------------------------

    @property
    def session(self) -> str:
        """The current session id (from the last ``welcome``)."""
        return self._session

    @property
    def node(self) -> str:
        """The node serving the current session (from the last ``welcome``)."""
        return self._node

    @property
    def user(self) -> str | None:
        """The authenticated user (the token's ``sub``), ``None`` when anonymous."""
        return self._user

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms joined (re-joined after each reconnect)."""
        return frozenset(self._rooms)

    @property
    def connected(self) -> bool:
        """Whether requests can be sent right now."""
        return self._ended is None and self._ready.is_set()

    @property
    def dropped(self) -> int:
        """Events dropped from the client's queue because it was not read in time."""
        return self._inbox.dropped

    def stats(self) -> dict[str, Any]:
        """Counters for logs and tests."""
        return {
            "connected": self.connected,
            "session": self._session,
            "node": self._node,
            "rooms": len(self._rooms),
            "pending": len(self._pending),
            "queued": len(self._inbox),
            "dropped": self._inbox.dropped,
            "reconnects": self._reconnects,
        }

    # --- lifecycle -----------------------------------------------------------

    async def open(self) -> Client:
        """Connect (trying each URL once, in order) and start the supervisor.

        Returns:
            The client itself.

        Raises:
            ConnectFailed: no URL could be connected to; the last failure is chained.
            RuntimeError: the client was opened before.
        """
        if self._opened:
            raise RuntimeError("a Client opens once; connect() again for a new one")
        self._opened = True
        failure: BaseException | None = None
        for index, url in enumerate(self._urls):
            try:
                ws, welcome = await open_connection(
                    url, open_timeout=self._open_timeout, headers=self._handshake_headers()
                )
            except OPEN_ERRORS as exc:
                failure = exc
                continue
            self._next_url = (index + 1) % len(self._urls)
            self._attach(ws, welcome)
            self._ready.set()
            self._supervisor = asyncio.get_running_loop().create_task(
                self._supervise(), name=f"roomcast-client-{welcome.session}"
            )
            return self
        raise ConnectFailed(f"cannot connect to {', '.join(self._urls)}: {failure}") from failure

    async def close(self) -> None:
        """Close the connection and end the client; idempotent.

        Requests still waiting fail with :class:`ClientClosed`; iteration
        over the client and its room views ends after the queued events.
        """
        self._end(ClientClosed("the client was closed"), quiet=True)
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def __aenter__(self) -> Client:
        return self if self._opened else await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- requests ------------------------------------------------------------

    # Each request takes its own ``timeout`` (ruff's ASYNC109 prefers the
    # caller's asyncio.timeout): its default is the client's, it covers the
    # wait for a reconnect, and it ends in a typed RequestTimeout.

    async def join(self, room: str, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Become a member of ``room`` (a no-op if already one).

        Args:
            room: 1-128 of ``A-Z a-z 0-9 _ . : @ -``.
            timeout: seconds allowed; the client's default if ``None``.

        Raises:
            BrokerError: the broker refused (e.g. ``BadRequest``, ``TooManyRooms``).
            RequestTimeout: no reply (or no connection) within the timeout.
            ConnectionLost: the connection ended before the reply.
            ClientClosed: the client has ended.
        """
        await self._request(Kind.JOIN, room, _join_request(room), timeout)

    async def leave(self, room: str, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Stop being a member of ``room``.

        A connection lost while the leave is in flight counts as success:
        the broker removes a session from every room when it disconnects.

        Args:
            room: the room to leave.
            timeout: seconds allowed; the client's default if ``None``.

        Raises:
            BrokerError: the broker refused (``NotMember``, ``BadRequest``).
            RequestTimeout: no reply (or no connection) within the timeout.
            ClientClosed: the client has ended.
        """
        await self._request(Kind.LEAVE, room, lambda ref: Leave(room=room, ref=ref), timeout)

    async def say(self, room: str, body: Any, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Publish ``body`` to every other member of ``room``.

        Returns when the broker has accepted the message. Messages one client
        says to one room, awaited one after the other, arrive in that order.

        Args:
            room: a room the client has joined.
            body: any value msgspec can encode as JSON, or a ``msgspec.Raw``
                holding JSON already encoded.
            timeout: seconds allowed; the client's default if ``None``.

        Raises:
            TypeError: ``body`` cannot be encoded as JSON.
            BrokerError: the broker refused (``NotMember``, ``RateLimited``,
                ``Unavailable``, ...).
            RequestTimeout: no reply (or no connection) within the timeout.
            ConnectionLost: the connection ended before the reply; the
                message may or may not have been published.
            ClientClosed: the client has ended.
        """
        raw = body if isinstance(body, msgspec.Raw) else msgspec.Raw(msgspec.json.encode(body))
        await self._request(Kind.SAY, room, lambda ref: Say(room=room, body=raw, ref=ref), timeout)

    async def ping(self, *, timeout: float | None = None) -> float:  # noqa: ASYNC109
        """Ask the broker for a ``pong``.

        Args:
            timeout: seconds allowed; the client's default if ``None``.

        Returns:
            The round-trip time in seconds (including any wait for a reconnect).

        Raises:
            RequestTimeout: no reply (or no connection) within the timeout.
            ConnectionLost: the connection ended before the reply.
            ClientClosed: the client has ended.
        """
        started = time.monotonic()
        await self._request(Kind.PING, None, lambda ref: Ping(ref=ref), timeout)
        return time.monotonic() - started

    async def refresh(self, token: str, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Replace the connection's token before it expires (docs/PROTOCOL-ADDITIONS.md).

        Once the broker accepts it, later reconnects present it too.

        Args:
            token: the new JSON Web Token, of the same user.
            timeout: seconds allowed; the client's default if ``None``.

        Raises:
            Unauthorized: the token is invalid, of another user, or the broker
                does not use tokens.
            Forbidden: it no longer grants a room the client is in.
            RequestTimeout: no reply (or no connection) within the timeout.
            ConnectionLost: the connection ended before the reply.
            ClientClosed: the client has ended.
        """
        await self._request(Kind.REFRESH, None, lambda ref: Refresh(token=token, ref=ref), timeout)
        self._token = token

    async def _request(
        self,
        kind: Kind,
        room: str | None,
        build: Callable[[int], ClientMessage],
        timeout: float | None,  # noqa: ASYNC109
    ) -> Reply:
        limit = self._request_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                for _ in range(_MAX_SEND_TRIES):
                    ws = await self._wait_ready()
                    try:
                        return await self._exchange(ws, kind, room, build)
                    except _NotSent:
                        if self._ws is ws:
                            self._ready.clear()  # the reader will notice the close soon
                raise ConnectionLost(f"{kind.value}: every connection closed before sending")
        except TimeoutError:
            waited = "reply" if self.connected else "connection to the broker"
            raise RequestTimeout(f"{kind.value}: no {waited} within {limit} s") from None

    async def _exchange(
        self,
        ws: ClientConnection,
        kind: Kind,
        room: str | None,
        build: Callable[[int], ClientMessage],
    ) -> Reply:
        """Send one request on ``ws`` and wait for its reply."""
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
            if self._ended is not None:
                raise self._closed_error()
            if self._ready.is_set() and self._ws is not None:
                return self._ws
            self._ready.clear()
            await self._ready.wait()
        raise self._closed_error() if self._ended else ConnectionLost("no usable connection")

    def _closed_error(self) -> ClientClosed:
        ended = self._ended
        assert ended is not None
        return ClientClosed(ended.reason, ended.code)

    # --- events --------------------------------------------------------------

    def __aiter__(self) -> Client:
        return self

    async def __anext__(self) -> Event:
        return await self._inbox.get()

    async def receive(self) -> Event:
        """The next event not routed to a room view (``async for`` without the loop).

        Raises:
            ClientClosed: the client has ended and every event was read.
        """
        try:
            return await self._inbox.get()
        except StopAsyncIteration:
            raise self._closed_error() from None

    def room(self, name: str, *, max_queue: int | None = None) -> RoomView:
        """A view of ``name``'s events; they go to it rather than to the client.

        It does not join the room. Close it (or use ``async with``) when done.

        Args:
            name: the room.
            max_queue: the view's queue bound; the client's if ``None``.

        Returns:
            The view, already receiving.
        """
        view = RoomView(
            name,
            Inbox(max_queue or self._max_queue, f"roomcast room view {name!r}"),
            self._detach_view,
        )
        if self._ended is not None:
            view.end(self._end_error)
        else:
            self._views.setdefault(name, set()).add(view)
        return view

    def _detach_view(self, view: RoomView) -> None:
        views = self._views.get(view.room)
        if views is not None:
            views.discard(view)
            if not views:
                del self._views[view.room]

    # --- the connection --------------------------------------------------------

    def _handshake_headers(self) -> dict[str, str]:
        if self._token is None:
            return self._headers
        return {**self._headers, "Authorization": f"Bearer {self._token}"}

    def _attach(self, ws: ClientConnection, welcome: Welcome) -> None:
        self._ws = ws
        self._session = welcome.session
        self._node = welcome.node
        self._user = None if isinstance(welcome.user, msgspec.UnsetType) else welcome.user
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
            case Ok() | Pong() | Error():
                self._on_reply(message)
            case Message() | Joined() | Left():
                if self._holding is not None:
                    self._holding.append(message)
                else:
                    self._route(message)
            case Welcome():
                pass  # only the first frame of a connection is its welcome
            case _:
                assert_never(message)

    def _on_reply(self, reply: Ok | Pong | Error) -> None:
        entry = self._pending.resolve(reply)
        if entry is None:
            if isinstance(reply, Error):
                log.warning("broker error for no request: %s %s", reply.code, reply.message)
            return
        if isinstance(reply, Ok) and entry.room is not None:
            if entry.kind is Kind.JOIN:
                self._rooms.add(entry.room)
            elif entry.kind is Kind.LEAVE:
                self._rooms.discard(entry.room)

    def _route(self, event: RoomEvent) -> None:
        views = self._views.get(event.room)
        if views:
            for view in views:
                view.deliver(event)
        else:
            self._inbox.put(event)

    # --- supervision -----------------------------------------------------------

    async def _supervise(self) -> None:
        try:
            while True:
                ws, reader = self._ws, self._reader
                assert ws is not None and reader is not None
                await reader
                await ws.wait_closed()
                code = ws.close_code or _ABNORMAL_CLOSURE
                reason = ws.close_reason or ""
                self._connection_ended(ws)
                rule = after_close(code)
                log.info("disconnected from %s: code %s %r", self._node, code, reason)
                if rule is After.STOP or self._policy is None:
                    why = (
                        "the broker refused this client"
                        if rule is After.STOP
                        else "reconnect is off"
                    )
                    self._end(ClientClosed(f"connection closed; {why}", code), last=(code, reason))
                    return
                self._inbox.put(Disconnected(code, reason, reconnecting=True))
                await self._reconnect(self._policy, now=rule is After.RECONNECT_NOW, code=code)
        except ClientClosed as exc:
            self._end(exc, last=(exc.code or _ABNORMAL_CLOSURE, exc.reason))
        except Exception as exc:
            log.exception("roomcast client failed")
            self._end(ClientClosed(f"client failed: {exc!r}"), last=(_ABNORMAL_CLOSURE, repr(exc)))
            if self._ws is not None:
                await self._ws.close()
        finally:
            if self._reader is not None and not self._reader.done():
                self._reader.cancel()

    def _connection_ended(self, ws: ClientConnection) -> None:
        if self._ended is None:
            self._ready.clear()
        if self._ws is ws:
            self._ws = None
        self._holding = None
        self._pending.end_connection(ws, self._outcome_of_lost)

    def _outcome_of_lost(self, entry: Pending) -> Reply | BaseException:
        if entry.kind is Kind.LEAVE and entry.room is not None:
            # The broker removes a disconnected session from every room
            # (PROTOCOL.md, "Semantics"): the leave has happened.
            self._rooms.discard(entry.room)
            return Ok(ref=entry.ref)
        return ConnectionLost(
            f"{entry.kind.value}: the connection ended before the broker answered"
        )

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
                status = refused_status(exc)
                if status is not None:
                    raise ClientClosed(f"the broker refused the handshake: HTTP {status}") from exc
                failures, last = failures + 1, exc
                log.debug("reconnect to %s failed (%d): %s", url, failures, exc)
                continue
            if await self._rejoin(ws, welcome):
                return
            failures += 1
        raise ClientClosed(f"gave up reconnecting after {failures} attempts: {last}", code)

    async def _rejoin(self, ws: ClientConnection, welcome: Welcome) -> bool:
        """Re-join every room on the new ``ws``; whether it is ready for use."""
        self._holding = []
        self._attach(ws, welcome)
        rooms = sorted(self._rooms)
        results = await asyncio.gather(
            *(
                asyncio.wait_for(
                    self._exchange(ws, Kind.JOIN, room, _join_request(room)),
                    self._request_timeout,
                )
                for room in rooms
            ),
            return_exceptions=True,
        )
        failed: dict[str, BrokerError] = {}
        for room, result in zip(rooms, results, strict=True):
            if isinstance(result, BrokerError):
                failed[room] = result
                self._rooms.discard(room)
            elif isinstance(result, BaseException):
                log.info("re-joining %s failed: %r; reconnecting again", room, result)
                await ws.close()
                reader = self._reader
                if reader is not None:
                    await asyncio.gather(reader, return_exceptions=True)
                self._connection_ended(ws)
                return False
        held, self._holding = self._holding or [], None
        self._reconnects += 1
        log.info("reconnected to %s as %s", welcome.node, welcome.session)
        self._inbox.put(
            Reconnected(
                welcome.session, welcome.node, tuple(r for r in rooms if r not in failed), failed
            )
        )
        for event in held:
            self._route(event)
        self._ready.set()
        return True

    def _end(
        self, error: ClientClosed, *, quiet: bool = False, last: tuple[int, str] | None = None
    ) -> None:
        """End the client: fail waiting requests, end every queue after ``last``."""
        if self._ended is not None:
            return
        self._ended = error
        self._ready.set()  # wakes waiting requests, which then see _ended
        self._pending.end_all(lambda _: ClientClosed(error.reason, error.code))
        if last is not None:
            self._inbox.put(Disconnected(last[0], last[1], reconnecting=False))
        self._end_error = None if quiet else error
        self._inbox.end(self._end_error)
        for views in self._views.values():
            for view in views:
                view.end(self._end_error)
        self._views.clear()


class _Connect:
    """What :func:`connect` returns: awaitable, and an async context manager."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def __await__(self) -> Generator[Any, None, Client]:
        return self._client.open().__await__()

    async def __aenter__(self) -> Client:
        return await self._client.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.close()


def connect(
    urls: str | Sequence[str],
    *,
    request_timeout: float = 10.0,
    reconnect: Reconnect | bool = True,
    max_queue: int = 1000,
    open_timeout: float = 10.0,
    headers: Mapping[str, str] | None = None,
    token: str | None = None,
) -> _Connect:
    """Connect to a broker: ``async with connect(url) as client:`` or ``await connect(url)``.

    Args:
        urls: ``ws://host:port/ws``, or several nodes of one cluster
            (reconnects go to the next one in turn).
        request_timeout: default seconds per request, including any wait
            for a reconnect.
        reconnect: a :class:`Reconnect` policy, ``True`` for the default,
            ``False`` to end the client when its connection ends.
        max_queue: events kept for the application at most; when more
            arrive unread, the oldest are dropped (counted in ``dropped``,
            logged as a warning).
        open_timeout: seconds to open a connection and get ``welcome``.
        headers: extra HTTP headers for the handshake.
        token: a JSON Web Token, for brokers that require one.

    Returns:
        An awaitable / async context manager giving the open :class:`Client`
        (awaiting it leaves closing to the caller).

    Raises:
        ConnectFailed: on open, when no URL could be connected to.
    """
    return _Connect(
        Client(
            urls,
            request_timeout=request_timeout,
            reconnect=reconnect,
            max_queue=max_queue,
            open_timeout=open_timeout,
            headers=headers,
            token=token,
        )
    )
