"""Python client SDK of roomcast: ``async with connect(url) as client``.

Depends only on the :mod:`protocol` package and the ``websockets`` asyncio
client, never on the server's modules: it ships alone as the
``roomcast-client`` distribution (``sdk/python/``), whose only dependencies
are ``websockets`` and ``msgspec``.
"""

from protocol import Joined, Left, Message, Position
from roomcast_client.backoff import Reconnect
from roomcast_client.client import Client, connect
from roomcast_client.errors import (
    BadRequest,
    BrokerError,
    ClientClosed,
    ClientError,
    ConnectFailed,
    ConnectionLost,
    Forbidden,
    InternalError,
    NotMember,
    RateLimited,
    RequestTimeout,
    TooManyRooms,
    Unauthorized,
    Unavailable,
)
from roomcast_client.events import (
    Disconnected,
    Event,
    Gap,
    HistoryPage,
    Member,
    Reconnected,
    RoomEvent,
    RoomPresence,
    ViewEvent,
    decode_body,
)
from roomcast_client.rooms import RoomView

__all__ = [
    "BadRequest",
    "BrokerError",
    "Client",
    "ClientClosed",
    "ClientError",
    "ConnectFailed",
    "ConnectionLost",
    "Disconnected",
    "Event",
    "Forbidden",
    "Gap",
    "HistoryPage",
    "InternalError",
    "Joined",
    "Left",
    "Member",
    "Message",
    "NotMember",
    "Position",
    "RateLimited",
    "Reconnect",
    "Reconnected",
    "RequestTimeout",
    "RoomEvent",
    "RoomPresence",
    "RoomView",
    "TooManyRooms",
    "Unauthorized",
    "Unavailable",
    "ViewEvent",
    "connect",
    "decode_body",
]
