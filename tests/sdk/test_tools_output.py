"""What the command-line tools print for each event, and how ``say`` reads
its BODY argument. No I/O."""

from __future__ import annotations

import msgspec
import pytest

from broker.client import Disconnected, Joined, Left, Message, Reconnected
from broker.client.errors import NotMember, RequestTimeout
from broker.client.tools import describe, error_label, event_json, parse_body


def _message(body: bytes) -> Message:
    return Message(room="lobby", from_="s-1", body=msgspec.Raw(body))


def test_chat_message_shows_name_sender_and_text() -> None:
    line = describe(_message(b'{"text":"hi","name":"ann"}'))

    assert line == "[lobby] ann (s-1): hi"


def test_message_without_text_shows_its_json() -> None:
    assert describe(_message(b'{"x": [1, 2]}')) == '[lobby] s-1: {"x": [1, 2]}'


def test_membership_lines_name_room_and_session() -> None:
    assert describe(Joined(room="r", session="s-2")) == "[r] * s-2 joined"
    assert describe(Left(room="r", session="s-2")) == "[r] * s-2 left"


def test_lifecycle_lines_say_what_happens_next() -> None:
    assert describe(Disconnected(1001, "shutdown", True)) == (
        "* disconnected (code 1001, shutdown); reconnecting"
    )
    assert describe(Disconnected(1006, "", False)) == "* disconnected (code 1006); giving up"
    assert describe(Reconnected("s-3", "n-1", ("a", "b"))) == (
        "* reconnected as s-3 on n-1, in a, b"
    )


def test_room_events_print_as_json_exactly_as_on_the_wire() -> None:
    line = event_json(_message(b'{"text":"hi"}'))

    assert msgspec.json.decode(line) == {
        "type": "message",
        "room": "lobby",
        "from": "s-1",
        "body": {"text": "hi"},
    }


def test_lifecycle_events_print_as_json_with_their_own_types() -> None:
    gone = msgspec.json.decode(event_json(Disconnected(1001, "bye", True)))
    back = msgspec.json.decode(
        event_json(Reconnected("s-3", "n-1", ("a",), {"b": NotMember("not_member", "no")}))
    )

    assert gone == {"type": "disconnected", "code": 1001, "reason": "bye", "reconnecting": True}
    assert back == {
        "type": "reconnected",
        "session": "s-3",
        "node": "n-1",
        "rooms": ["a"],
        "failed": {"b": "not_member"},
    }


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ('{"a": 1}', b'{"a": 1}'),
        ("42", b"42"),
        ('"quoted"', b'"quoted"'),
        ("hello world", b'"hello world"'),
        ("{not json", b'"{not json"'),
    ],
)
def test_body_argument_is_json_when_valid_else_a_string(text: str, sent: bytes) -> None:
    body = parse_body(text)

    encoded = bytes(body) if isinstance(body, msgspec.Raw) else msgspec.json.encode(body)
    assert encoded == sent


def test_error_label_leads_with_the_code() -> None:
    assert error_label(NotMember("not_member", "not in x")) == "not_member: not in x"
    assert error_label(RequestTimeout("say: no reply")).startswith("timeout: ")
