"""Channel names, and the one format of a payload on a room channel.

Room ``R`` of namespace ``ns`` is the channel ``{ns}:room:{R}``; node ``N``
hears its own canaries on ``{ns}:node:{N}``.

A payload crosses Redis as ``{node}\\n{exclude}\\n{published_at}\\n{json}``:
the JSON was encoded once by the node where it was said, and receiving nodes
forward it without decoding it. ``node`` and ``exclude`` hold no newline
(node ids have no whitespace; session ids are the node's own).
"""

from __future__ import annotations

__all__ = ["node_channel", "pack", "room_prefix", "unpack"]


def room_prefix(namespace: str) -> bytes:
    """What every room channel of ``namespace`` starts with."""
    return f"{namespace}:room:".encode()


def node_channel(namespace: str, node: bytes) -> bytes:
    """The channel on which ``node`` publishes and hears its canaries."""
    return f"{namespace}:node:".encode() + node


def pack(node: bytes, exclude: str, published_at: float, payload: bytes) -> bytes:
    """The bytes to PUBLISH for ``payload`` said on ``node``."""
    return b"\n".join((node, exclude.encode(), repr(published_at).encode(), payload))


def unpack(data: bytes, skip: bytes) -> tuple[str, bytes, float] | None:
    """``(exclude, payload, published_at)`` carried by ``data``, or None when
    node ``skip`` published it (a node's own publishes come back to it).

    Raises:
        ValueError: ``data`` is not in this format (another program wrote it).
    """
    node, exclude, published_at, payload = data.split(b"\n", 3)
    if node == skip:
        return None
    return exclude.decode(), payload, float(published_at)
