"""What ``async for event in client`` yields.

Room events are the protocol package's own Structs (:class:`protocol.Message`,
:class:`protocol.Joined`, :class:`protocol.Left`), so the SDK and the wire
cannot disagree. A message body stays the :class:`msgspec.Raw` bytes it
arrived as (decoding is the application's choice and may need a type);
:func:`decode_body` turns it into a Python value. The connection's lifecycle
is told by two SDK-owned dataclasses, :class:`Disconnected` and
:class:`Reconnected`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

import msgspec

from protocol import Joined, Left, Message
from roomcast_client.errors import BrokerError

__all__ = [
    "Disconnected",
    "Event",
    "Reconnected",
    "RoomEvent",
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

    Everything said while it was away is lost (the protocol keeps no
    history): refresh application state from here.

    Attributes:
        session: the new session id.
        node: the node now serving the client.
        rooms: the rooms re-joined.
        failed: rooms that could not be re-joined, with the broker's refusal;
            they are no longer among :attr:`Client.rooms`.
    """

    session: str
    node: str
    rooms: tuple[str, ...]
    failed: Mapping[str, BrokerError] = field(default_factory=dict)


RoomEvent = Message | Joined | Left
"""An event about one room, as the broker sent it."""

Event = Message | Joined | Left | Disconnected | Reconnected
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
