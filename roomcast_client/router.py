"""Where a client's events go: a room event to every open view of its room
(:mod:`roomcast_client.rooms`), else to the client's own queue
(:mod:`roomcast_client.inbox`); lifecycle events to the client's queue.

Invariants:
    * While holding (a new connection is re-joining its rooms), room events
      are kept in arrival order and routed only by :meth:`Router.release`,
      after the :class:`Reconnected` it is given: the application hears of
      the reconnect before any event of the new session.
    * Once ended, every queue ends after what it holds, and a view opened
      later ends at once, with the same error.
    * A message is routed at most once per room position: a replayed one at
      or below what was already routed is dropped here (:meth:`Positions.accept`),
      so the application never gets it twice ("Recovery").
"""

from __future__ import annotations

from protocol import Message
from roomcast_client.errors import ClientClosed
from roomcast_client.events import Disconnected, Event, Reconnected, RoomEvent
from roomcast_client.gaps import RoomTracking
from roomcast_client.inbox import Inbox
from roomcast_client.positions import Positions
from roomcast_client.rooms import RoomView

__all__ = ["Router"]


class Router:
    """The client's queue and its room views.

    Args:
        max_queue: events kept at most by the client's queue, and by default
            by each view's.
        positions: the client's room positions (a fresh one if ``None``).
    """

    def __init__(self, max_queue: int, positions: Positions | None = None) -> None:
        self._max_queue = max_queue
        self._positions = positions or Positions()
        self._inbox: Inbox[Event] = Inbox(
            max_queue, "roomcast client queue", RoomTracking(self._positions)
        )
        self._views: dict[str, set[RoomView]] = {}
        self._held: list[RoomEvent] | None = None
        self._ended = False
        self._end_error: ClientClosed | None = None

    def __len__(self) -> int:
        return len(self._inbox)

    @property
    def dropped(self) -> int:
        """Events dropped from the client's queue because it was not read in time."""
        return self._inbox.dropped

    async def get(self) -> Event:
        """The next event of the client's queue.

        Raises:
            StopAsyncIteration: the client was closed and every event was read.
            ClientClosed: the client ended on its own and every event was read.
        """
        return await self._inbox.get()

    def room_event(self, event: RoomEvent) -> None:
        """Route ``event`` now, or keep it while holding."""
        if self._held is not None:
            self._held.append(event)
        else:
            self._route(event)

    def disconnected(self, event: Disconnected) -> None:
        """Queue ``event`` for the client (the connection ended, reconnecting)."""
        self._inbox.put(event)

    def hold(self) -> None:
        """Keep room events back until :meth:`release` (re-joining starts)."""
        self._held = []

    def drop_held(self) -> None:
        """Forget the held events: their connection ended before it was ready."""
        self._held = None

    def release(self, reconnected: Reconnected) -> None:
        """Queue ``reconnected``, then route the held events in order."""
        held, self._held = self._held or [], None
        self._inbox.put(reconnected)
        for event in held:
            self._route(event)

    def open_view(self, room: str, max_queue: int | None = None) -> RoomView:
        """A view that takes ``room``'s events until closed.

        Args:
            room: the room.
            max_queue: the view's queue bound; the client's if ``None``.
        """
        view = RoomView(
            room,
            Inbox(
                max_queue or self._max_queue,
                f"roomcast room view {room!r}",
                RoomTracking(self._positions),
            ),
            self._detach,
        )
        if self._ended:
            view.end(self._end_error)
        else:
            self._views.setdefault(room, set()).add(view)
        return view

    def end(self, error: ClientClosed | None, last: Disconnected | None = None) -> None:
        """End every queue after ``last``; once drained they raise ``error``
        (or end iteration quietly if ``None``: the application closed the client)."""
        if self._ended:
            return
        self._ended = True
        self._end_error = error
        if last is not None:
            self._inbox.put(last)
        self._inbox.end(error)
        for views in self._views.values():
            for view in views:
                view.end(error)
        self._views.clear()

    def _route(self, event: RoomEvent) -> None:
        if isinstance(event, Message) and not self._positions.accept(event):
            return
        views = self._views.get(event.room)
        if views:
            for view in views:
                view.deliver(event)
        else:
            self._inbox.put(event)

    def _detach(self, view: RoomView) -> None:
        views = self._views.get(view.room)
        if views is not None:
            views.discard(view)
            if not views:
                del self._views[view.room]
