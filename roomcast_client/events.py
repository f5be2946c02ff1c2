"""What ``async for event in client`` yields.

Room events are the protocol package's own Structs (:class:`protocol.Message`,
:class:`protocol.Joined`, :class:`protocol.Left`), so the SDK and the wire
cannot disagree. A message body stays the :class:`msgspec.Raw` bytes it
arrived as (decoding is the application's choice and may need a type);
:func:`decode_body` turns it into a Python value. The connection's lifecycle
is told by two SDK-owned dataclasses, :class:`Disconnected` and
:class:`Reconnected`; messages dropped unread from a full queue by a
:class:`Gap`. A ``history`` read returns a :class:`HistoryPage`, a
``presence`` read a :class:`RoomPresence`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar, overload

import msgspec

from protocol import Joined, Left, Message, Position, PresenceReply
from roomcast_client.errors import BrokerError

__all__ = [
    "Disconnected",
    "Event",
    "Gap",
    "HistoryPage",
    "Member",
    "Reconnected",
    "RoomEvent",
    "RoomPresence",
    "ViewEvent",
    "decode_body",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection to the broker ended.

    Attributes:
        code: the WebSocket close code (1006 when the connection dropped
            without a closing handshake, e.g. the node was killed).
        reason: the close reason the broker gave, possibly empty.
        reconnecting: whether the client is trying to reconnect; when
            ``False`` this is the last event and the client has ended.
    """

    code: int
    reason: str
    reconnecting: bool


@dataclass(frozen=True, slots=True)
class Reconnected:
    """The client is connected again, as a new session.

    Each room was re-joined with its last position (docs/HISTORY-PRESENCE.md,
    "Recovery"). In a recovered room, the messages said while the client was
    away follow this event as ordinary :class:`Message` events, in order,
    before live ones, none twice. A room not recovered (its history no longer
    holds what was missed, its epoch changed, or it keeps no history) may have
    lost messages: reload its state (e.g. :meth:`Client.history`).

    Membership events are not replayed: the :class:`Joined` and :class:`Left`
    of the time away are lost in every room. An application that shows who is
    in a room reads it again here (:meth:`Client.presence`); the SDK does not,
    as most do not need it and a reconnect storm would multiply the reads.

    Attributes:
        session: the new session id.
        node: the node now serving the client.
        rooms: the rooms re-joined.
        failed: rooms that could not be re-joined, with the broker's refusal;
            they are no longer among :attr:`Client.rooms`.
        recovered: for each room re-joined, whether nothing said while the
            client was away is lost.
    """

    session: str
    node: str
    rooms: tuple[str, ...]
    failed: Mapping[str, BrokerError] = field(default_factory=dict)
    recovered: Mapping[str, bool] = field(default_factory=dict)

    @property
    def not_recovered(self) -> tuple[str, ...]:
        """The rooms re-joined whose missed messages could not be recovered."""
        return tuple(room for room in self.rooms if not self.recovered.get(room, False))


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages of ``room`` were dropped unread from a full queue.

    Delivered by the queue that dropped them (the client's, or a room
    view's), at its next read and before its other events. The room's
    position moves past them only once this is read; read them back with
    ``client.history(room, before=last_offset + 1)`` if they matter.
    Messages of a room without history are dropped without a gap (there is
    no position to report).

    Attributes:
        room: the room.
        epoch: the epoch of the dropped messages.
        after_offset: the offset before the first dropped message.
        last_offset: the offset of the last dropped message.
        dropped: how many messages were dropped (offsets in between that
            were not dropped were this client's own says).
    """

    room: str
    epoch: str
    after_offset: int
    last_offset: int
    dropped: int


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A room's kept messages (docs/HISTORY-PRESENCE.md, "history").

    Attributes:
        room: the room.
        position: the room's current position; ``None`` when it keeps no history.
        messages: the messages asked for, oldest first, as members received them.
    """

    room: str
    position: Position | None
    messages: list[Message]


class Member(NamedTuple):
    """One session in a room (docs/HISTORY-PRESENCE.md, "Presence")."""

    session: str
    """The session id, as in ``Joined.session`` and ``Left.session``."""
    user: str | None
    """The session's user (its token's ``sub``); ``None`` when anonymous."""


@dataclass(frozen=True, slots=True)
class RoomPresence:
    """Who is in a room, on every node of the cluster, the asker included
    (docs/HISTORY-PRESENCE.md, "Presence").

    Attributes:
        room: the room.
        count: the sessions in the room.
        users: the distinct users among them (anonymous sessions count as none).
        members: at most 1,000 of those sessions (``truncated`` says when
            there are more), each with its user where known.
        truncated: whether ``members`` lists fewer sessions than ``count``.
    """

    room: str
    count: int
    users: int
    members: tuple[Member, ...]
    truncated: bool = False

    @classmethod
    def from_reply(cls, reply: PresenceReply) -> RoomPresence:
        """The SDK's view of the broker's ``presence`` reply."""
        return cls(
            room=reply.room,
            count=reply.count,
            users=reply.users,
            members=tuple(
                Member(m.session, None if isinstance(m.user, msgspec.UnsetType) else m.user)
                for m in reply.members
            ),
            truncated=reply.truncated is True,
        )


RoomEvent = Message | Joined | Left
"""An event about one room, as the broker sent it."""

ViewEvent = Message | Joined | Left | Gap
"""What a room view (``client.room(name)``) yields."""

Event = Message | Joined | Left | Disconnected | Reconnected | Gap
"""Anything ``async for event in client`` yields."""


@overload
def decode_body(message: Message) -> Any: ...
@overload
def decode_body(message: Message, type: type[T]) -> T: ...
def decode_body(message: Message, type: Any = Any) -> Any:
    """Decode a message's body.

    Args:
        message: a received message.
        type: what to decode the body as (anything msgspec can decode into,
            e.g. a Struct or a dataclass); by default plain Python values
            (dict, list, str, int, float, bool, None).

    Returns:
        The body as ``type``.

    Raises:
        msgspec.ValidationError: the body does not match ``type``.
    """
    return msgspec.json.decode(message.body, type=type)
