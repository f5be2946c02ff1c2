"""Room naming rule (PROTOCOL.md, "Semantics"): 1 to 128 characters from
``A-Z a-z 0-9 _ . : @ -``."""

from __future__ import annotations

import re

__all__ = ["ROOM_MAX_LENGTH", "ROOM_PATTERN", "is_valid_room"]

ROOM_MAX_LENGTH = 128
ROOM_PATTERN = r"^[A-Za-z0-9_.:@-]{1,128}$"

# fullmatch with an explicit class: "$" alone would accept a trailing newline.
_ROOM_RE = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")


def is_valid_room(name: str) -> bool:
    """Return whether ``name`` is a legal room name."""
    return _ROOM_RE.fullmatch(name) is not None
