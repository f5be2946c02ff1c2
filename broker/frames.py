"""Server-to-client WebSocket framing (RFC 6455 section 5.2).

Frames a server sends are not masked (section 5.1), so without an extension
the bytes of one frame are valid for every connection: a broadcast is framed
once per node and the same ``bytes`` object is written to every member.
"""

from __future__ import annotations

import struct

__all__ = ["text_frame"]

_FIN_TEXT = 0x81  # FIN bit + opcode 0x1 (text)


def text_frame(payload: bytes) -> bytes:
    """Return a complete, unfragmented, unmasked text frame holding ``payload``."""
    length = len(payload)
    if length < 126:
        return bytes((_FIN_TEXT, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", _FIN_TEXT, 126, length) + payload
    return struct.pack("!BBQ", _FIN_TEXT, 127, length) + payload
