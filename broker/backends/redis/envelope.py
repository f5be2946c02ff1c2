"""Key and channel names, and the one format of a payload on a room channel.

Every key of room ``R`` of namespace ``ns`` and its channel share the hash
tag ``{ns:R}``, so that one script touches one slot (Redis Cluster):
``{ns:R}:p`` is its position, ``{ns:R}:h`` its history, ``{ns:R}:c`` its
sharded channel (SPUBLISH/SSUBSCRIBE); ``{ns:R}:ps``, ``:pu`` and ``:pn``
its presence (:class:`PresenceKeys`). Node ``N`` hears its own canaries
on ``{ns:node:N}``, on the connection that carries its rooms.

A payload crosses Redis as
``{node}\\n{exclude}\\n{published_at}\\n{offset}\\n{epoch}\\n{json}`` (offset
0 and an empty epoch without a position): the JSON was encoded once by the
node where it was said (the position written in by the publish script), and
receiving nodes forward it without decoding it. ``node``, ``exclude`` and
``epoch`` hold no newline (node ids have no whitespace; session ids are the
node's own; epochs are ``[A-Za-z0-9-]``).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["PresenceKeys", "RoomKeys", "node_channel", "pack", "pack_head", "room_of", "unpack"]


class RoomKeys(NamedTuple):
    """The keys and channel of one room (one hash tag)."""

    position: bytes
    history: bytes
    channel: bytes

    @classmethod
    def of(cls, namespace: str, room: str) -> RoomKeys:
        """The keys of ``room`` in ``namespace``."""
        tag = f"{{{namespace}:{room}}}:".encode()
        return cls(tag + b"p", tag + b"h", tag + b"c")


class PresenceKeys(NamedTuple):
    """The presence keys of one room (the room's hash tag, beside :class:`RoomKeys`)."""

    sessions: bytes
    """HASH session -> user (empty: anonymous): who is in the room."""
    users: bytes
    """HASH user -> how many of the room's sessions are that user's."""
    nodes: bytes
    """HASH node -> how many of the room's sessions that node holds."""

    @classmethod
    def of(cls, namespace: str, room: str) -> PresenceKeys:
        """The presence keys of ``room`` in ``namespace``."""
        tag = f"{{{namespace}:{room}}}:".encode()
        return cls(tag + b"ps", tag + b"pu", tag + b"pn")


def room_of(namespace: str, channel: bytes) -> str | None:
    """The room whose channel is ``channel``, or None if it is not a room channel."""
    prefix = f"{{{namespace}:".encode()
    if channel.startswith(prefix) and channel.endswith(b"}:c"):
        return channel[len(prefix) : -3].decode()
    return None


def node_channel(namespace: str, node: bytes) -> bytes:
    """The channel on which ``node`` publishes and hears its canaries."""
    return f"{{{namespace}:node:".encode() + node + b"}"


def pack_head(node: bytes, exclude: str, published_at: float) -> bytes:
    """The envelope's first three lines (the publish script adds the position)."""
    return b"%s\n%s\n%s\n" % (node, exclude.encode(), repr(published_at).encode())


def pack(
    node: bytes, exclude: str, published_at: float, payload: bytes, offset: int = 0, epoch: str = ""
) -> bytes:
    """The bytes to SPUBLISH for ``payload`` said on ``node``."""
    return b"%s%d\n%s\n%s" % (
        pack_head(node, exclude, published_at),
        offset,
        epoch.encode(),
        payload,
    )


def unpack(data: bytes) -> tuple[str, bytes, float, int, str]:
    """``(exclude, payload, published_at, offset, epoch)`` carried by ``data``.

    Raises:
        ValueError: ``data`` is not in this format (another program wrote it).
    """
    _node, exclude, published_at, offset, epoch, payload = data.split(b"\n", 5)
    return exclude.decode(), payload, float(published_at), int(offset), epoch.decode()
