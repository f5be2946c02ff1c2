"""roomcast wire protocol v1: message types, codec and rules. No I/O."""

from protocol.codec import decode_request, decode_server_message, encode, error_frame
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import (
    PROTOCOL_VERSION,
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
    Ref,
    Refresh,
    Say,
    ServerMessage,
    Welcome,
)
from protocol.rules import is_valid_room

__all__ = [
    "PROTOCOL_VERSION",
    "ClientMessage",
    "Error",
    "ErrorCode",
    "Join",
    "Joined",
    "Leave",
    "Left",
    "Message",
    "Ok",
    "Ping",
    "Pong",
    "ProtocolError",
    "Ref",
    "Refresh",
    "Say",
    "ServerMessage",
    "Welcome",
    "decode_request",
    "decode_server_message",
    "encode",
    "error_frame",
    "is_valid_room",
]
