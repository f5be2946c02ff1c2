"""roomcast wire protocol v1: message types, codec and rules. No I/O."""

from protocol.close_codes import CLOSE_RULES, CloseCode, ReconnectRule, reconnect_rule
from protocol.codec import decode_request, decode_server_message, encode, error_frame
from protocol.errors import ErrorCode, ProtocolError
from protocol.http_api import HttpError, HttpErrorCode, http_error_body
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
    "CLOSE_RULES",
    "PROTOCOL_VERSION",
    "ClientMessage",
    "CloseCode",
    "Error",
    "ErrorCode",
    "HttpError",
    "HttpErrorCode",
    "Join",
    "Joined",
    "Leave",
    "Left",
    "Message",
    "Ok",
    "Ping",
    "Pong",
    "ProtocolError",
    "ReconnectRule",
    "Ref",
    "Refresh",
    "Say",
    "ServerMessage",
    "Welcome",
    "decode_request",
    "decode_server_message",
    "encode",
    "error_frame",
    "http_error_body",
    "is_valid_room",
    "reconnect_rule",
]
