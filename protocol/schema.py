"""JSON Schema export of both unions (``python -m protocol schema``).

The room rule lives in :mod:`protocol.rules` (so that a bad name gets
``bad_room``, not ``bad_message``); it is written into the schema here.
"""

from __future__ import annotations

from typing import Any

import msgspec

from protocol.messages import ClientMessage, ServerMessage
from protocol.rules import ROOM_MAX_LENGTH, ROOM_PATTERN

__all__ = ["json_schema", "json_schema_text"]


def json_schema() -> dict[str, Any]:
    """Return one JSON Schema document describing both directions.

    ``$defs`` holds every message; ``ClientMessage`` and ``ServerMessage`` are
    the two tagged unions.
    """
    (client, server), components = msgspec.json.schema_components(
        [ClientMessage, ServerMessage], ref_template="#/$defs/{name}"
    )
    for name in ("Join", "Leave", "Say", "History", "Presence"):
        room = components[name]["properties"]["room"]
        room.update(pattern=ROOM_PATTERN, minLength=1, maxLength=ROOM_MAX_LENGTH)
    components["ClientMessage"] = client
    components["ServerMessage"] = server
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "roomcast wire protocol v1",
        "$defs": components,
        "oneOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerMessage"}],
    }


def json_schema_text() -> str:
    """The schema as stable, indented JSON text (what the golden file holds)."""
    return msgspec.json.format(msgspec.json.encode(json_schema()), indent=2).decode() + "\n"
