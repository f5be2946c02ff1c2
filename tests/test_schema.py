"""The JSON Schema of the wire protocol (``python -m protocol schema``) is
kept in a golden file, so that code, schema and docs cannot drift apart
unnoticed, and it says what PROTOCOL.md says."""

from __future__ import annotations

import json
from typing import Any

import pytest

from protocol.close_codes import CLOSE_RULES
from protocol.errors import ErrorCode
from protocol.rules import ROOM_PATTERN
from protocol.schema import json_schema, json_schema_text
from tests.support.processes import REPO

GOLDEN = REPO / "tests" / "golden" / "protocol-schema.json"
REGENERATE = "python -m protocol schema > tests/golden/protocol-schema.json"

# PROTOCOL.md v1; later versions may add types, never remove these.
CLIENT_TYPES = {"join": "Join", "leave": "Leave", "say": "Say", "ping": "Ping"}
SERVER_TYPES = {
    "welcome": "Welcome",
    "ok": "Ok",
    "error": "Error",
    "pong": "Pong",
    "message": "Message",
    "joined": "Joined",
    "left": "Left",
}


@pytest.fixture(scope="module")
def defs() -> dict[str, Any]:
    schema_defs: dict[str, Any] = json_schema()["$defs"]
    return schema_defs


def test_schema_equals_the_golden_file() -> None:
    assert json_schema_text() == GOLDEN.read_text(), (
        "The wire protocol's JSON Schema changed. If the change is intended (the wire "
        f"format may only grow), regenerate the golden file with `{REGENERATE}`, "
        "and update PROTOCOL.md to match."
    )


def test_schema_text_is_valid_json_ending_in_a_newline() -> None:
    text = json_schema_text()
    assert json.loads(text) == json_schema()
    assert text.endswith("}\n")


@pytest.mark.parametrize(
    ("union", "types"), [("ClientMessage", CLIENT_TYPES), ("ServerMessage", SERVER_TYPES)]
)
def test_union_is_tagged_by_type_and_holds_every_v1_message(
    defs: dict[str, Any], union: str, types: dict[str, str]
) -> None:
    discriminator = defs[union]["discriminator"]
    assert discriminator["propertyName"] == "type"
    for tag, name in types.items():
        assert discriminator["mapping"][tag] == f"#/$defs/{name}"


@pytest.mark.parametrize("name", ["Join", "Leave", "Say"])
def test_room_fields_carry_the_naming_rule(defs: dict[str, Any], name: str) -> None:
    room = defs[name]["properties"]["room"]
    assert (room["pattern"], room["minLength"], room["maxLength"]) == (ROOM_PATTERN, 1, 128)


@pytest.mark.parametrize("name", ["Join", "Leave", "Say", "Ping"])
def test_ref_is_optional_int_or_short_string(defs: dict[str, Any], name: str) -> None:
    assert "ref" not in defs[name].get("required", [])
    ref = defs[name]["properties"]["ref"]
    assert {"type": "integer"} in ref["anyOf"]
    assert {"type": "string", "maxLength": 64} in ref["anyOf"]


@pytest.mark.parametrize("name", ["Error", "Pong"])
def test_ref_of_error_and_pong_is_always_written(defs: dict[str, Any], name: str) -> None:
    assert "ref" in defs[name]["required"]
    assert {"type": "null"} in defs[name]["properties"]["ref"]["anyOf"]


def test_message_sender_is_named_from_on_the_wire(defs: dict[str, Any]) -> None:
    assert "from" in defs["Message"]["properties"]
    assert "from_" not in defs["Message"]["properties"]
    assert defs["Message"]["required"] == ["type", "room", "from", "body"]


def test_say_body_accepts_any_json_value(defs: dict[str, Any]) -> None:
    assert defs["Say"]["properties"]["body"] == {}


def test_schema_lists_every_error_code(defs: dict[str, Any]) -> None:
    assert defs["ErrorCode"]["enum"] == [code.value for code in ErrorCode]


def test_schema_exports_the_close_rule_of_every_close_code() -> None:
    rules = json_schema()["x-close-rules"]
    assert {int(code): entry["reconnect"] for code, entry in rules.items()} == {
        int(code): rule.value for code, rule in CLOSE_RULES.items()
    }
    assert rules["1001"] == {"name": "going_away", "reconnect": "at_once"}
