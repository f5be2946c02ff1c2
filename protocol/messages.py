"""Every message of wire protocol v1 as a msgspec Struct.

The Structs are the schema: the decoder validates against them, the encoder
writes them, and ``python -m protocol schema`` exports them. Fields are only
ever added, with defaults (PROTOCOL.md: "Later versions may add fields").

Invariants:
    * ``type`` is the tag of both unions and is written first.
    * ``Error.ref`` and ``Pong.ref`` are always written, as ``null`` when absent.
    * ``Say.body`` and ``Message.body`` are :class:`msgspec.Raw`: the broker
      carries a body as the bytes it arrived as and never decodes it.
    * ``user`` (docs/PROTOCOL-ADDITIONS.md) is :data:`msgspec.UNSET` for an
      anonymous session and is then not written at all, so anonymous frames
      stay byte-identical to protocol v1 as first published. ``UNSET`` rather
      than ``omit_defaults``: that would also drop ``Welcome.protocol``.
    * Positions (docs/HISTORY-PRESENCE.md, "Positions"): ``offset`` and
      ``epoch`` are the last fields of ``Message``, so that a node can write
      them into an already encoded frame by replacing its closing brace
      (:func:`protocol.codec.with_position`), once per message, not per member.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

__all__ = [
    "MAX_PRESENCE_MEMBERS",
    "PROTOCOL_VERSION",
    "ClientMessage",
    "Epoch",
    "Error",
    "History",
    "HistoryReply",
    "Join",
    "Joined",
    "Leave",
    "Left",
    "Message",
    "Offset",
    "Ok",
    "Ping",
    "Pong",
    "Position",
    "Presence",
    "PresenceMember",
    "PresenceReply",
    "Ref",
    "Refresh",
    "Say",
    "ServerMessage",
    "Welcome",
]

PROTOCOL_VERSION: Final = 1

Ref = int | Annotated[str, msgspec.Meta(max_length=64)]
"""A client-chosen request id: an integer or a string of at most 64 characters."""

_RoomField = Annotated[str, msgspec.Meta(description="Room name: 1-128 of A-Z a-z 0-9 _ . : @ -")]

Offset = Annotated[int, msgspec.Meta(ge=0, description="A position in a room's history")]
"""An offset in a room: the first message of an epoch has 1; 0 means "before any"."""

Epoch = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, description="The name of a room's history")
]
"""An epoch: names one history of a room; an offset means something only with it."""

_UserField = Annotated[
    str | msgspec.UnsetType,
    msgspec.Meta(description="The authenticated user (the token's sub); absent when anonymous"),
]


class _Base(msgspec.Struct, tag_field="type"):
    """Common base: JSON objects tagged by ``type``."""


# --- client to server ------------------------------------------------------


class Position(msgspec.Struct, forbid_unknown_fields=True):
    """Where a client stands in a room: the last ``offset`` it has, in ``epoch``."""

    offset: Offset
    epoch: Epoch


class Join(_Base, tag="join"):
    """Become a member of ``room``; with ``since``, first receive what was
    said after that position (docs/HISTORY-PRESENCE.md, "Recovery")."""

    room: _RoomField
    ref: Ref | None = None
    since: Position | msgspec.UnsetType = msgspec.UNSET


class Leave(_Base, tag="leave"):
    """Stop being a member of ``room``."""

    room: _RoomField
    ref: Ref | None = None


class Say(_Base, tag="say"):
    """Publish ``body`` (any JSON value) to ``room``."""

    room: _RoomField
    body: msgspec.Raw
    ref: Ref | None = None


class Ping(_Base, tag="ping"):
    """Application-level keepalive."""

    ref: Ref | None = None


class Refresh(_Base, tag="refresh"):
    """Replace the connection's token before it expires (docs/PROTOCOL-ADDITIONS.md)."""

    token: str
    ref: Ref | None = None


class History(_Base, tag="history"):
    """Read a room's recent messages (docs/HISTORY-PRESENCE.md, "history")."""

    room: _RoomField
    limit: Annotated[int, msgspec.Meta(ge=1)] | msgspec.UnsetType = msgspec.UNSET
    """The newest ``limit`` messages (1 to the node's history size); default all kept."""
    before: Annotated[int, msgspec.Meta(ge=1)] | msgspec.UnsetType = msgspec.UNSET
    """Only messages with a smaller offset (paging back)."""
    ref: Ref | None = None


class Presence(_Base, tag="presence"):
    """Ask who is in ``room``, cluster-wide (docs/HISTORY-PRESENCE.md, "Presence")."""

    room: _RoomField
    ref: Ref | None = None


ClientMessage = Join | Leave | Say | Ping | Refresh | History | Presence
"""Any request a client may send."""


# --- server to client ------------------------------------------------------


class Welcome(_Base, tag="welcome"):
    """First frame after the handshake."""

    session: str
    node: str
    protocol: int = PROTOCOL_VERSION
    user: _UserField = msgspec.UNSET


class Ok(_Base, tag="ok"):
    """A request with ``ref`` succeeded.

    For a ``join`` of a room that keeps history: the room's position when the
    session became a member, and with ``since``, whether it was recovered.
    For a ``say``: the position its message got.
    """

    ref: Ref
    offset: Offset | msgspec.UnsetType = msgspec.UNSET
    epoch: Epoch | msgspec.UnsetType = msgspec.UNSET
    recovered: bool | msgspec.UnsetType = msgspec.UNSET


class Error(_Base, tag="error"):
    """A request failed; the connection stays open."""

    ref: Ref | None
    code: str
    message: str


class Pong(_Base, tag="pong"):
    """Answer to ``ping``."""

    ref: Ref | None


class Message(_Base, tag="message"):
    """Someone else said ``body`` in ``room``."""

    room: str
    from_: str = msgspec.field(name="from")
    body: msgspec.Raw
    user: _UserField = msgspec.UNSET
    offset: Offset | msgspec.UnsetType = msgspec.UNSET
    epoch: Epoch | msgspec.UnsetType = msgspec.UNSET


class Joined(_Base, tag="joined"):
    """Another session joined a room you are in."""

    room: str
    session: str
    user: _UserField = msgspec.UNSET


class Left(_Base, tag="left"):
    """Another session left a room you are in (or disconnected)."""

    room: str
    session: str
    user: _UserField = msgspec.UNSET


class HistoryReply(_Base, tag="history"):
    """The answer to ``history``: the room's current position and its kept
    messages, oldest first, each exactly as members received it."""

    ref: Ref | None
    room: str
    offset: Offset | msgspec.UnsetType = msgspec.UNSET
    epoch: Epoch | msgspec.UnsetType = msgspec.UNSET
    messages: list[Message] = msgspec.field(default_factory=list)


class PresenceMember(msgspec.Struct):
    """One session in a room, with its user where known."""

    session: str
    user: _UserField = msgspec.UNSET


MAX_PRESENCE_MEMBERS: Final = 1000
"""Members a presence reply lists at most (``truncated`` says there are more)."""


class PresenceReply(_Base, tag="presence"):
    """The answer to ``presence``: every session in the room on every node.

    ``count`` is the number of sessions, ``users`` the number of distinct
    users (anonymous sessions count as none); ``members`` lists at most
    :data:`MAX_PRESENCE_MEMBERS` sessions, with ``truncated`` when there are more.
    """

    ref: Ref | None
    room: str
    count: Annotated[int, msgspec.Meta(ge=0)]
    users: Annotated[int, msgspec.Meta(ge=0)]
    members: list[PresenceMember] = msgspec.field(default_factory=list)
    truncated: bool | msgspec.UnsetType = msgspec.UNSET


ServerMessage = Welcome | Ok | Error | Pong | Message | Joined | Left | HistoryReply | PresenceReply
"""Any frame the server may send."""
