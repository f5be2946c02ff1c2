"""What a verified token grants, without I/O and without a JWT library: the
identity, the room grants and their patterns, and the verifier seam
(docs/PROTOCOL-ADDITIONS.md, "Authentication").

The claims this broker reads::

    {"sub": "alice", "exp": 1735689600,
     "rooms": [{"pattern": "team:42:*", "rights": ["join", "say"]},
               {"pattern": "lobby", "rights": ["join"]}]}

A pattern is an exact room name, or a room-name prefix followed by one ``*``
(``*`` alone: every room). ``team:42:*`` matches ``team:42:chat``, never
``team:420``. A room no grant matches is forbidden; no ``rooms`` claim means
no room at all.

How a token becomes an :class:`Identity` (signature, algorithms, registered
claims) is :mod:`broker.tokens`' business; the session only needs a
:class:`TokenVerifier`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import msgspec

from protocol import is_valid_room

__all__ = [
    "Identity",
    "Right",
    "RoomGrant",
    "TokenError",
    "TokenVerifier",
    "pattern_matches",
    "valid_pattern",
]

Right = Literal["join", "say"]
"""What a grant allows in the rooms it matches."""


class TokenError(Exception):
    """A token was refused; ``reason`` says why, in words fit for the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RoomGrant(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One entry of the ``rooms`` claim: the rights it gives in the rooms ``pattern`` matches."""

    pattern: str
    rights: frozenset[Right]


def pattern_matches(pattern: str, room: str) -> bool:
    """Whether the room pattern ``pattern`` covers ``room``.

    A trailing ``*`` makes the rest a prefix: ``team:42:*`` covers
    ``team:42:chat`` but not ``team:420``, because the prefix keeps its ``:``.
    """
    if pattern.endswith("*"):
        return room.startswith(pattern[:-1])
    return room == pattern


def valid_pattern(pattern: str) -> bool:
    """Whether ``pattern`` is ``*``, a valid room name, or one followed by ``*``."""
    if pattern == "*":
        return True
    name = pattern[:-1] if pattern.endswith("*") else pattern
    return is_valid_room(name)


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified token: who the session is, until when, and where it may go.

    Attributes:
        user: the token's ``sub``, sent to others as ``user``.
        expires_at: the token's ``exp`` (seconds since the epoch).
        grants: the ``rooms`` claim.
    """

    user: str
    expires_at: float
    grants: tuple[RoomGrant, ...]

    def allows(self, room: str, right: Right) -> bool:
        """Whether some grant gives ``right`` in ``room``."""
        return any(right in g.rights and pattern_matches(g.pattern, room) for g in self.grants)


class TokenVerifier(Protocol):
    """Turns a token into an identity (:class:`broker.tokens.Authenticator` is one)."""

    def verify(self, token: str) -> Identity:
        """Check ``token`` and return who it names.

        Raises:
            TokenError: the token is refused; its ``reason`` goes to the client.
        """
        ...
