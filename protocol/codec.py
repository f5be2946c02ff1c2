"""Encoding and decoding of wire frames.

Decoders and the encoder are built once at import (msgspec's advice: building
them per call costs more than the decode). :func:`decode_request` is the one
place where a bad frame becomes ``bad_json``, ``bad_message`` or ``bad_room``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import (
    ClientMessage,
    Error,
    History,
    Join,
    Leave,
    Presence,
    PresenceMember,
    PresenceReply,
    Ref,
    Say,
    ServerMessage,
)
from protocol.rules import is_valid_room

__all__ = [
    "decode_request",
    "decode_server_message",
    "encode",
    "encode_history",
    "encode_presence",
    "error_frame",
    "sender_of",
    "with_position",
]

_encoder = msgspec.json.Encoder()
_request_decoder: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)
_server_decoder: msgspec.json.Decoder[ServerMessage] = msgspec.json.Decoder(ServerMessage)


class _RefOnly(msgspec.Struct):
    """Lenient view of a rejected request, to echo its ``ref`` if it has one."""

    ref: Any = None


_ref_decoder = msgspec.json.Decoder(_RefOnly)


def encode(message: ServerMessage | ClientMessage) -> bytes:
    """Encode one message as UTF-8 JSON bytes."""
    return _encoder.encode(message)


def decode_request(frame: bytes | str) -> ClientMessage | ProtocolError:
    """Turn one text frame from a client into a typed request or a typed error.

    Never raises for bad input: every failure comes back as a
    :class:`ProtocolError` whose ``ref`` echoes the request's when it could
    be read.
    """
    if isinstance(frame, bytes) and not frame.isascii():
        # msgspec does not check the UTF-8 of a Raw body, which would then be
        # fanned out to every member as an invalid text frame.
        try:
            frame.decode()
        except UnicodeDecodeError as exc:
            return ProtocolError(ErrorCode.BAD_JSON, f"invalid UTF-8: {exc.reason}")
    try:
        request = _request_decoder.decode(frame)
    except msgspec.ValidationError as exc:
        if not _well_formed(frame):
            # msgspec may stop at a bad tag before it reaches a syntax error.
            return ProtocolError(ErrorCode.BAD_JSON, "JSON is malformed")
        return ProtocolError(ErrorCode.BAD_MESSAGE, str(exc), _salvage_ref(frame))
    except (msgspec.DecodeError, UnicodeError) as exc:
        # UnicodeError: a str frame with lone surrogates, for instance.
        return ProtocolError(ErrorCode.BAD_JSON, str(exc))
    except RecursionError:
        return ProtocolError(ErrorCode.BAD_JSON, "JSON is nested too deeply")
    if isinstance(request, Join | Leave | Say | History | Presence) and not is_valid_room(
        request.room
    ):
        return ProtocolError(
            ErrorCode.BAD_ROOM,
            f"bad room name {request.room[:140]!r}: 1-128 of A-Z a-z 0-9 _ . : @ -",
            request.ref,
        )
    return request


def decode_server_message(frame: bytes | str) -> ServerMessage:
    """Decode one frame sent by a server.

    Raises:
        msgspec.DecodeError: the frame is not a valid server message.
    """
    return _server_decoder.decode(frame)


def error_frame(error: ProtocolError) -> bytes:
    """Encode ``error`` as the ``error`` reply the contract prescribes."""
    return _encoder.encode(Error(ref=error.ref, code=error.code.value, message=error.message))


def with_position(payload: bytes, offset: int, epoch: str) -> bytes:
    """Write ``offset`` and ``epoch`` into an encoded ``message`` frame.

    ``payload`` is a ``message`` encoded by :func:`encode` without a position;
    ``offset`` and ``epoch`` are its last fields (protocol.messages), so they
    go just before the closing brace: the frame is extended once per message
    on the node that learns its position, never re-encoded per member. The
    Redis backend's publish script does the same in Lua.
    """
    return b'%s,"offset":%d,"epoch":%s}' % (payload[:-1], offset, _encoder.encode(epoch))


class _HistoryFrames(msgspec.Struct, tag_field="type", tag="history"):
    """``HistoryReply`` with its messages as the frames members received
    (kept verbatim, never decoded); a test keeps the two in step."""

    ref: Ref | None
    room: str
    offset: int | msgspec.UnsetType = msgspec.UNSET
    epoch: str | msgspec.UnsetType = msgspec.UNSET
    messages: list[msgspec.Raw] = msgspec.field(default_factory=list)


class _HistoryBody(msgspec.Struct):
    """The history endpoint's body: the reply without ``type`` and ``ref``."""

    room: str
    offset: int | msgspec.UnsetType = msgspec.UNSET
    epoch: str | msgspec.UnsetType = msgspec.UNSET
    messages: list[msgspec.Raw] = msgspec.field(default_factory=list)


def encode_history(
    room: str,
    position: tuple[int, str] | None,
    frames: list[bytes],
    ref: Ref | None = None,
    *,
    http: bool = False,
) -> bytes:
    """Encode the ``history`` reply (or, with ``http``, the body of
    ``GET /rooms/{room}/history``) from the stored ``message`` frames.

    Args:
        room: the room.
        position: the room's current ``(offset, epoch)``; ``None`` for a room
            without history (then no ``offset`` is written).
        frames: the kept ``message`` frames, oldest first.
        ref: the request's ``ref``.
        http: encode the HTTP body (no ``type``, no ``ref``).
    """
    offset: int | msgspec.UnsetType = msgspec.UNSET
    epoch: str | msgspec.UnsetType = msgspec.UNSET
    if position is not None:
        offset, epoch = position
    messages = [msgspec.Raw(frame) for frame in frames]
    if http:
        return _encoder.encode(_HistoryBody(room, offset, epoch, messages))
    return _encoder.encode(_HistoryFrames(ref, room, offset, epoch, messages))


class _PresenceBody(msgspec.Struct):
    """The presence endpoint's body: ``PresenceReply`` without ``type`` and
    ``ref`` (a test keeps the two in step)."""

    room: str
    count: int
    users: int
    members: list[PresenceMember] = msgspec.field(default_factory=list)
    truncated: bool | msgspec.UnsetType = msgspec.UNSET


def encode_presence(
    room: str,
    count: int,
    users: int,
    members: Sequence[tuple[str, str | None]],
    truncated: bool,
    ref: Ref | None = None,
    *,
    http: bool = False,
) -> bytes:
    """Encode the ``presence`` reply (or, with ``http``, the body of
    ``GET /rooms/{room}/presence``: the reply without ``type`` and ``ref``).

    Args:
        room: the room.
        count: sessions in the room on every node.
        users: distinct users among them.
        members: the sessions listed, ``(session, user or None)``.
        truncated: whether ``members`` lists fewer than ``count`` (written
            only when true).
        ref: the request's ``ref``.
        http: encode the HTTP body (no ``type``, no ``ref``).
    """
    listed = [
        PresenceMember(session, msgspec.UNSET if user is None else user)
        for session, user in members
    ]
    more: bool | msgspec.UnsetType = True if truncated else msgspec.UNSET
    if http:
        body = _PresenceBody(room=room, count=count, users=users, members=listed, truncated=more)
        return _encoder.encode(body)
    reply = PresenceReply(
        ref=ref, room=room, count=count, users=users, members=listed, truncated=more
    )
    return _encoder.encode(reply)


class _Sender(msgspec.Struct):
    from_: str = msgspec.field(name="from", default="")


_sender_decoder = msgspec.json.Decoder(_Sender)


def sender_of(frame: bytes) -> str:
    """The ``from`` of an encoded ``message`` frame (``""`` if it has none).

    For the rare paths that hand a stored frame to members (history fills):
    its sender must not receive it, as on the live path.
    """
    try:
        return _sender_decoder.decode(frame).from_
    except msgspec.DecodeError:
        return ""


def _well_formed(frame: bytes | str) -> bool:
    try:
        msgspec.json.decode(frame)
    except (msgspec.DecodeError, RecursionError):
        return False
    return True


def _salvage_ref(frame: bytes | str) -> Ref | None:
    try:
        ref = _ref_decoder.decode(frame).ref
    except (msgspec.DecodeError, RecursionError):
        return None
    if isinstance(ref, bool):
        return None
    if isinstance(ref, int) or (isinstance(ref, str) and len(ref) <= 64):
        return ref
    return None
