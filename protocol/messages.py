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
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

__all__ = [
    "PROTOCOL_VERSION",
    "ClientMessage",
    "Error",
    "Join",
    "Joined",
    "Leave",
    "Left",
    "Message",
    "Ok",
    "Ping",
    "Pong",
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

_UserField = Annotated[
    str | msgspec.UnsetType,
    msgspec.Meta(description="The authenticated user (the token's sub); absent when anonymous"),
]


class _Base(msgspec.Struct, tag_field="type"):
    """Common base: JSON objects tagged by ``type``."""


# --- client to server ------------------------------------------------------


class Join(_Base, tag="join"):
    """Become a member of ``room``."""

    room: _RoomField
    ref: Ref | None = None


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


ClientMessage = Join | Leave | Say | Ping | Refresh
"""Any request a client may send."""


# --- server to client ------------------------------------------------------


class Welcome(_Base, tag="welcome"):
    """First frame after the handshake."""

    session: str
    node: str
    protocol: int = PROTOCOL_VERSION
    user: _UserField = msgspec.UNSET


class Ok(_Base, tag="ok"):
    """A request with ``ref`` succeeded."""

    ref: Ref


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


ServerMessage = Welcome | Ok | Error | Pong | Message | Joined | Left
"""Any frame the server may send."""
