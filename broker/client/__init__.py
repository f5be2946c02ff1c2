"""Python client SDK of roomcast: ``async with connect(url) as client``.

Depends only on the :mod:`protocol` package and the ``websockets`` asyncio
client, never on the server's modules.
"""

from broker.client.backoff import Reconnect
from broker.client.client import Client, connect
from broker.client.errors import (
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
from broker.client.events import Disconnected, Event, Reconnected, RoomEvent, decode_body
from broker.client.rooms import RoomView
from protocol import Joined, Left, Message

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
    "InternalError",
    "Joined",
    "Left",
    "Message",
    "NotMember",
    "RateLimited",
    "Reconnect",
    "Reconnected",
    "RequestTimeout",
    "RoomEvent",
    "RoomView",
    "TooManyRooms",
    "Unauthorized",
    "Unavailable",
    "connect",
    "decode_body",
]
