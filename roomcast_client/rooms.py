"""A per-room view of a client's events: ``async for event in client.room("lobby")``.

While a view is open, the events of its room go to the view (to every open
view of that room) instead of to ``async for event in client``. A view does
not join the room: that is :meth:`Client.join`'s job. Messages its full
queue drops come back as one :class:`~roomcast_client.events.Gap` per room,
at the view's next read.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from roomcast_client.errors import ClientClosed
from roomcast_client.events import RoomEvent, ViewEvent
from roomcast_client.inbox import Inbox

__all__ = ["RoomView"]


class RoomView:
    """The events of one room, in a bounded queue of their own.

    Use it as ``async with client.room(name) as view`` (or call
    :meth:`close`) so that the room's events go back to the client when done.
    The queue follows the client's policy: drop-oldest when full.

    Args:
        room: the room's name.
        inbox: the queue the client fills.
        detach: tells the client to stop routing to this view.
    """

    def __init__(
        self, room: str, inbox: Inbox[ViewEvent], detach: Callable[[RoomView], None]
    ) -> None:
        self.room = room
        self._inbox = inbox
        self._detach = detach

    @property
    def dropped(self) -> int:
        """Events dropped because the view was not read fast enough."""
        return self._inbox.dropped

    def deliver(self, event: RoomEvent) -> None:
        """Queue ``event`` (called by the client)."""
        self._inbox.put(event)

    def end(self, error: BaseException | None) -> None:
        """Stop after the queued events (called by the client when it ends)."""
        self._inbox.end(error)

    def close(self) -> None:
        """Stop receiving; the room's events go to the client again.

        Messages left unread count as received for the room's position
        (closing the view gave them up); they can still be read.
        """
        self._detach(self)
        self._inbox.settle()
        self._inbox.end(None)

    async def __aenter__(self) -> RoomView:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __aiter__(self) -> RoomView:
        return self

    async def __anext__(self) -> ViewEvent:
        return await self._inbox.get()

    async def receive(self) -> ViewEvent:
        """The next event of this room (``async for`` without the loop).

        Raises:
            ClientClosed: the view or its client was closed.
        """
        try:
            return await self._inbox.get()
        except StopAsyncIteration:
            raise ClientClosed(f"the view of room {self.room!r} is closed") from None
