"""JSON Schema export of both unions (``python -m protocol schema``).

The room rule lives in :mod:`protocol.rules` (so that a bad name gets
``bad_room``, not ``bad_message``); it is written into the schema here.
"""

from __future__ import annotations

from typing import Any

import msgspec

from protocol.close_codes import CLOSE_RULES, CloseCode
from protocol.errors import ErrorCode
from protocol.messages import ClientMessage, ServerMessage
from protocol.rules import ROOM_MAX_LENGTH, ROOM_PATTERN

__all__ = ["json_schema", "json_schema_text"]


def json_schema() -> dict[str, Any]:
    """Return one JSON Schema document describing both directions.

    ``$defs`` holds every message; ``ClientMessage`` and ``ServerMessage`` are
    the two tagged unions. ``ErrorCode`` and ``CloseCode`` list the values of
    an error's ``code`` and of a close code, and ``x-close-rules`` is the
    table of :mod:`protocol.close_codes` (what a client does after each
    close), so that an SDK in another language generates it instead of
    copying it by hand.
    """
    (client, server), components = msgspec.json.schema_components(
        [ClientMessage, ServerMessage], ref_template="#/$defs/{name}"
    )
    for name in ("Join", "Leave", "Say", "History", "Presence"):
        room = components[name]["properties"]["room"]
        room.update(pattern=ROOM_PATTERN, minLength=1, maxLength=ROOM_MAX_LENGTH)
    components["ClientMessage"] = client
    components["ServerMessage"] = server
    components["ErrorCode"] = {
        "title": "ErrorCode",
        "description": "The code field of an error reply.",
        "enum": [code.value for code in ErrorCode],
    }
    components["CloseCode"] = {
        "title": "CloseCode",
        "description": "WebSocket close codes the broker uses (1006 is only reported locally).",
        "enum": [int(code) for code in CloseCode],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "roomcast wire protocol v1",
        "$defs": components,
        "oneOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerMessage"}],
        "x-close-rules": _close_rules(),
    }


def _close_rules() -> dict[str, dict[str, str]]:
    """Close code -> its name and the reconnect rule (any other code backs off)."""
    return {
        str(int(code)): {"name": code.name.lower(), "reconnect": rule.value}
        for code, rule in CLOSE_RULES.items()
    }


def json_schema_text() -> str:
    """The schema as stable, indented JSON text (what the golden file holds)."""
    return msgspec.json.format(msgspec.json.encode(json_schema()), indent=2).decode() + "\n"
