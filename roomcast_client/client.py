"""The SDK's client: one logical connection to a broker that outlives the
WebSocket connections under it.

:class:`Client` is a facade over three parts, each in its own module:
requests and their replies (:mod:`roomcast_client.requests`), the events
waiting for the application (:mod:`roomcast_client.router`), and the
connection's supervision and reconnects (:mod:`roomcast_client.supervisor`).

Invariants:
    * A client opens once; :meth:`Client.close` is idempotent.
    * ``_requests.rooms`` are exactly the rooms a reconnect re-joins.
    * One :class:`Positions` is shared by the requests (``ok`` replies) and
      the router (messages routed and delivered).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping, Sequence
from types import TracebackType
from typing import Any

import msgspec

from protocol import (
    History,
    HistoryReply,
    Leave,
    Ok,
    Ping,
    Position,
    Presence,
    PresenceReply,
    Refresh,
    Say,
)
from roomcast_client.backoff import Reconnect
from roomcast_client.events import Event, HistoryPage, RoomPresence
from roomcast_client.pending import Kind
from roomcast_client.positions import Positions, position_of
from roomcast_client.requests import Requests, join_request
from roomcast_client.rooms import RoomView
from roomcast_client.router import Router
from roomcast_client.supervisor import Supervisor

__all__ = ["Client", "connect"]


class Client:
    """A client of a roomcast broker; create it with :func:`connect`.

    Requests (:meth:`join`, :meth:`leave`, :meth:`say`, :meth:`history`,
    :meth:`presence`, :meth:`ping`) may be made from any number of tasks at
    once. Events are read with ``async for event in client`` (or
    :meth:`receive`, or a :meth:`room` view); unread ones wait in a bounded
    queue that drops its oldest when full (see
    :mod:`roomcast_client.inbox`; dropped messages come back as a
    :class:`Gap`). When the connection drops, the client reconnects,
    re-joins its rooms from their positions (recovering what was said
    meanwhile: :meth:`position`) and emits :class:`Reconnected`, as
    :func:`protocol.reconnect_rule` and the :class:`Reconnect` policy rule.

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

    Raises:
        ValueError: no URL is given.
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
        positions = Positions()
        self._requests = Requests(request_timeout, positions)
        self._router = Router(max_queue, positions)
        self._supervisor = Supervisor(
            (urls,) if isinstance(urls, str) else tuple(urls),
            requests=self._requests,
            router=self._router,
            policy=Reconnect() if reconnect is True else (reconnect or None),
            open_timeout=open_timeout,
            headers=headers,
            token=token,
        )
        self._opened = False

    # --- state ---------------------------------------------------------------

    @property
    def session(self) -> str:
        """The current session id (from the last ``welcome``)."""
        return self._supervisor.session

    @property
    def node(self) -> str:
        """The node serving the current session (from the last ``welcome``)."""
        return self._supervisor.node

    @property
    def user(self) -> str | None:
        """The authenticated user (the token's ``sub``), ``None`` when anonymous."""
        return self._supervisor.user

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms joined (re-joined after each reconnect)."""
        return self._requests.rooms

    def position(self, room: str) -> Position | None:
        """Where the application stands in ``room`` (docs/HISTORY-PRESENCE.md,
        "Positions"): every message up to this offset, in this epoch, came
        before the join, was said by this client, was read from a queue, or
        was reported in a :class:`Gap`. A reconnect recovers from here.

        Returns:
            The position; ``None`` if the room is not joined or keeps no history.
        """
        return self._requests.positions.position(room)

    @property
    def connected(self) -> bool:
        """Whether requests can be sent right now."""
        return self._requests.connected

    @property
    def dropped(self) -> int:
        """Events dropped from the client's queue because it was not read in time."""
        return self._router.dropped

    def stats(self) -> dict[str, Any]:
        """Counters for logs and tests."""
        return {
            "connected": self.connected,
            "session": self.session,
            "node": self.node,
            "rooms": len(self._requests.rooms),
            "pending": len(self._requests),
            "queued": len(self._router),
            "dropped": self._router.dropped,
            "reconnects": self._supervisor.reconnects,
        }

    # --- lifecycle -----------------------------------------------------------

    async def open(self) -> Client:
        """Connect (trying each URL once, in order) and start the supervisor.

        Returns:
            The client itself.

        Raises:
            ConnectFailed: no URL could be connected to; the last failure is
                chained; ``status`` and ``reason`` tell a refused handshake.
            RuntimeError: the client was opened before.
        """
        if self._opened:
            raise RuntimeError("a Client opens once; connect() again for a new one")
        self._opened = True
        await self._supervisor.open()
        return self

    async def close(self) -> None:
        """Close the connection and end the client; idempotent.

        Requests still waiting fail with :class:`ClientClosed`; iteration
        over the client and its room views ends after the queued events.
        """
        await self._supervisor.close()

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

    async def join(self, room: str, *, timeout: float | None = None) -> Position | None:  # noqa: ASYNC109
        """Become a member of ``room`` (a no-op if already one).

        Args:
            room: 1-128 of ``A-Z a-z 0-9 _ . : @ -``.
            timeout: seconds allowed; the client's default if ``None``.

        Returns:
            The room's position when the client became a member: every
            message after it reaches the client. ``None`` when the room keeps
            no history.

        Raises:
            BrokerError: the broker refused (e.g. ``BadRequest``, ``TooManyRooms``).
            RequestTimeout: no reply (or no connection) within the timeout.
            ConnectionLost: the connection ended before the reply.
            ClientClosed: the client has ended.
        """
        return _position(await self._requests.request(Kind.JOIN, room, join_request(room), timeout))

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
        await self._requests.request(
            Kind.LEAVE, room, lambda ref: Leave(room=room, ref=ref), timeout
        )

    async def say(self, room: str, body: Any, *, timeout: float | None = None) -> Position | None:  # noqa: ASYNC109
        """Publish ``body`` to every other member of ``room``.

        Returns when the broker has accepted the message. Messages one client
        says to one room, awaited one after the other, arrive in that order.

        Args:
            room: a room the client has joined.
            body: any value msgspec can encode as JSON, or a ``msgspec.Raw``
                holding JSON already encoded.
            timeout: seconds allowed; the client's default if ``None``.

        Returns:
            The position the message got (the sender never receives its own
            messages: this is how it learns it); ``None`` when the room keeps
            no history.

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
        return _position(
            await self._requests.request(
                Kind.SAY, room, lambda ref: Say(room=room, body=raw, ref=ref), timeout
            )
        )

    async def history(
        self,
        room: str,
        *,
        limit: int | None = None,
        before: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> HistoryPage:
        """Read the messages ``room`` keeps (docs/HISTORY-PRESENCE.md, "history").

        Reading history does not move the room's position.

        Args:
            room: a room the client has joined.
            limit: the newest ``limit`` messages (1 to the broker's history
                size); all kept if ``None``.
            before: only messages with a smaller offset (paging back).
            timeout: seconds allowed; the client's default if ``None``.

        Returns:
            The room's current position and the messages, oldest first.

        Raises:
            NotMember: the client is not in ``room``.
            BadRequest: ``limit`` or ``before`` is out of range.
            Unavailable: the broker's backend could not read history.
            RequestTimeout: no reply (or no connection) within the timeout.
            ConnectionLost: the connection ended before the reply.
            ClientClosed: the client has ended.
        """
        reply = await self._requests.request(
            Kind.HISTORY,
            room,
            lambda ref: History(
                room=room,
                limit=msgspec.UNSET if limit is None else limit,
                before=msgspec.UNSET if before is None else before,
                ref=ref,
            ),
            timeout,
        )
        assert isinstance(reply, HistoryReply)
        position = (
            None
            if isinstance(reply.offset, msgspec.UnsetType)
            or isinstance(reply.epoch, msgspec.UnsetType)
            else Position(offset=reply.offset, epoch=reply.epoch)
        )
        return HistoryPage(room, position, reply.messages)

    async def presence(self, room: str, *, timeout: float | None = None) -> RoomPresence:  # noqa: ASYNC109
        """Read who is in ``room`` on every node (docs/HISTORY-PRESENCE.md, "Presence").

        Exact as of the read: a session whose ``join`` got ``ok`` before it is
        listed, one whose ``leave`` got ``ok`` or whose :class:`Left` was sent
        is not. To keep a list current, apply the :class:`Joined` and
        :class:`Left` events read after the reply (they are idempotent on a
        mapping keyed by session), and read it again after each
        :class:`Reconnected`: recovery replays messages, not membership
        events.

        Args:
            room: a room the client has joined.
            timeout: seconds allowed; the client's default if ``None``.

        Returns:
            The counts and at most 1,000 members, this client's session included.

        Raises:
            NotMember: the client is not in ``room``.
            BadRequest: ``room`` is not a valid room name.
            Unavailable: the broker's backend could not read presence.
            RequestTimeout: no reply (or no connection) within the timeout.
            ConnectionLost: the connection ended before the reply.
            ClientClosed: the client has ended.
        """
        reply = await self._requests.request(
            Kind.PRESENCE, room, lambda ref: Presence(room=room, ref=ref), timeout
        )
        assert isinstance(reply, PresenceReply)
        return RoomPresence.from_reply(reply)

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
        await self._requests.request(Kind.PING, None, lambda ref: Ping(ref=ref), timeout)
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
        await self._requests.request(
            Kind.REFRESH, None, lambda ref: Refresh(token=token, ref=ref), timeout
        )
        self._supervisor.token = token

    # --- events --------------------------------------------------------------

    def __aiter__(self) -> Client:
        return self

    async def __anext__(self) -> Event:
        return await self._router.get()

    async def receive(self) -> Event:
        """The next event not routed to a room view (``async for`` without the loop).

        Raises:
            ClientClosed: the client has ended and every event was read.
        """
        try:
            return await self._router.get()
        except StopAsyncIteration:
            raise self._requests.closed_error() from None

    def room(self, name: str, *, max_queue: int | None = None) -> RoomView:
        """A view of ``name``'s events; they go to it rather than to the client.

        It does not join the room. Close it (or use ``async with``) when done.

        Args:
            name: the room.
            max_queue: the view's queue bound; the client's if ``None``.

        Returns:
            The view, already receiving.
        """
        return self._router.open_view(name, max_queue)


def _position(reply: object) -> Position | None:
    return position_of(reply) if isinstance(reply, Ok) else None


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
