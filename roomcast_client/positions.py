"""Where the application stands in each joined room. No I/O.

A room's *position* (docs/HISTORY-PRESENCE.md, "Positions") is the highest
offset such that every message up to it, in the room's epoch, preceded the
join, was said by this client, was delivered to the application, or was
reported to it as part of a :class:`~roomcast_client.events.Gap`. It is what
a reconnect asks to recover from (``join`` with ``since``, "Recovery").

Two moments matter, and they are kept apart:

* *routing* (:meth:`Positions.accept`): a message enters a queue. A message at
  or below what was already routed (or said by this client) is a replayed
  duplicate and is dropped here, once for every queue.
* *delivery* (:meth:`Positions.delivered`): the application takes a message
  (or a gap notice) from a queue. Only then does the position move, so that a
  message dropped unread from a full queue never counts as received.

Invariants:
    * ``offset`` only grows within an epoch; it moves to a new epoch only on
      the ``ok`` of a join (a fresh join, or a re-join that was not recovered).
    * Every offset in ``ahead`` is greater than ``offset + 1``: ``ahead`` holds
      the done offsets past a hole (an own say whose ``ok`` came before an
      earlier message was read), and :meth:`_advance` consumes it.
    * A room without history (no position in its join's ``ok``) has
      ``epoch is None`` and no position; nothing is deduplicated there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final

import msgspec

from protocol import Message, Ok, Position
from roomcast_client.events import Event, Gap

__all__ = ["Positions", "RoomTrack", "position_of"]

log = logging.getLogger("roomcast_client")

# Offsets done past a hole that never fills (only possible if the broker broke
# the contract) stop being tracked beyond this: the position then jumps.
_MAX_AHEAD: Final = 10_000


def position_of(ok: Ok) -> Position | None:
    """The position an ``ok`` carries, if any (a room without history has none)."""
    if isinstance(ok.offset, msgspec.UnsetType) or isinstance(ok.epoch, msgspec.UnsetType):
        return None
    return Position(offset=ok.offset, epoch=ok.epoch)


@dataclass(slots=True)
class RoomTrack:
    """The bookkeeping of one joined room."""

    epoch: str | None
    offset: int = 0
    """The application's position in ``epoch``."""
    routed: int = 0
    """The highest offset routed to a queue in ``epoch``."""
    ahead: set[int] = field(default_factory=set)


class Positions:
    """The positions of a client's rooms (one per client, shared by its
    requests, which see the ``ok`` replies, and its router, which sees the
    messages)."""

    def __init__(self) -> None:
        self._rooms: dict[str, RoomTrack] = {}

    def position(self, room: str) -> Position | None:
        """The application's position in ``room``; ``None`` if the room is not
        joined or keeps no history."""
        track = self._rooms.get(room)
        if track is None or track.epoch is None:
            return None
        return Position(offset=track.offset, epoch=track.epoch)

    since = position
    """What a re-join of ``room`` asks to recover from ("Recovery")."""

    # --- replies -----------------------------------------------------------------

    def joined(self, room: str, ok: Ok) -> None:
        """A ``join`` of ``room`` got ``ok``.

        A recovered re-join keeps the position: the replayed messages come as
        ordinary messages and move it when read. So does a no-op join of a room
        already tracked in the same epoch (its ``ok`` tells the room's current
        position, not what this client has read). Otherwise (a fresh join, a
        re-join not recovered, another epoch) the position is the ``ok``'s.
        """
        track = self._rooms.get(room)
        position = position_of(ok)
        if position is None:
            self._rooms[room] = RoomTrack(epoch=None)
            return
        if track is not None and track.epoch == position.epoch and ok.recovered is not False:
            return
        self._rooms[room] = RoomTrack(position.epoch, position.offset, position.offset)

    def said(self, room: str, ok: Ok) -> None:
        """A ``say`` to ``room`` got ``ok``: its offset is done (the sender never
        receives its own message, "Positions")."""
        track = self._rooms.get(room)
        position = position_of(ok)
        if track is None or position is None or track.epoch != position.epoch:
            return
        self._done(track, position.offset)

    def forget(self, room: str) -> None:
        """``room`` was left (or could not be re-joined)."""
        self._rooms.pop(room, None)

    # --- messages ----------------------------------------------------------------

    def accept(self, message: Message) -> bool:
        """Whether to route ``message`` to a queue: ``False`` for a duplicate
        (a replayed message already routed, or this client's own say)."""
        track = self._rooms.get(message.room)
        if track is None or track.epoch is None or message.epoch != track.epoch:
            return True
        offset = message.offset
        assert isinstance(offset, int)  # an epoch comes with an offset (protocol.messages)
        if offset <= track.routed or offset <= track.offset or offset in track.ahead:
            return False
        track.routed = offset
        return True

    def delivered(self, event: Event) -> None:
        """The application took ``event`` from a queue (idempotent: several
        views of one room deliver the same message)."""
        if isinstance(event, Message):
            track = self._rooms.get(event.room)
            if track is not None and track.epoch is not None and event.epoch == track.epoch:
                assert isinstance(event.offset, int)
                self._done(track, event.offset)
        elif isinstance(event, Gap):
            track = self._rooms.get(event.room)
            if track is not None and event.epoch == track.epoch:
                # Reported: the application reads history if it cares ("history").
                for offset in range(event.after_offset + 1, event.last_offset + 1):
                    self._done(track, offset)

    def _done(self, track: RoomTrack, offset: int) -> None:
        if offset <= track.offset:
            return
        if offset == track.offset + 1:
            track.offset = offset
            self._advance(track)
            return
        track.ahead.add(offset)
        if len(track.ahead) > _MAX_AHEAD:
            log.warning(
                "roomcast client: offsets %d..%d of a room never arrived; moving on",
                track.offset + 1,
                min(track.ahead) - 1,
            )
            track.offset = min(track.ahead)
            track.ahead.discard(track.offset)
            self._advance(track)

    @staticmethod
    def _advance(track: RoomTrack) -> None:
        ahead = track.ahead
        while ahead and track.offset + 1 in ahead:
            track.offset += 1
            ahead.discard(track.offset)
        track.routed = max(track.routed, track.offset)
