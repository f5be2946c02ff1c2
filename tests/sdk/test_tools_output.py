"""What the command-line tools print for each event and for ``who``, and how
``say`` reads its BODY argument. No I/O."""

from __future__ import annotations

import msgspec
import pytest

from broker.commands.tools import (
    describe,
    error_label,
    event_json,
    parse_body,
    presence_json,
    presence_lines,
    refusal_hint,
)
from roomcast_client import (
    Disconnected,
    Gap,
    Joined,
    Left,
    Member,
    Message,
    Reconnected,
    RoomPresence,
)
from roomcast_client.errors import ConnectFailed, NotMember, RequestTimeout


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


def test_gap_line_says_how_many_messages_were_dropped() -> None:
    assert describe(Gap("r", "e-1", 3, 9, 6)) == "[r] * 6 messages dropped unread"


def test_gap_prints_as_json_with_its_range() -> None:
    assert msgspec.json.decode(event_json(Gap("r", "e-1", 3, 9, 6))) == {
        "type": "gap",
        "room": "r",
        "epoch": "e-1",
        "after_offset": 3,
        "last_offset": 9,
        "dropped": 6,
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


def test_error_label_of_a_refused_handshake_gives_status_and_reason() -> None:
    refused = ConnectFailed("refused", status=401, reason="a token is required")

    assert error_label(refused) == "refused (401): a token is required"


def test_error_label_of_an_unreachable_broker_says_connect_failed() -> None:
    assert error_label(ConnectFailed("cannot connect")) == "connect_failed: cannot connect"


@pytest.mark.parametrize(
    ("status", "token_given", "hint"),
    [
        (401, False, "pass --token or set BROKER_TOKEN"),
        (401, True, "pass a valid, unexpired token with --token or BROKER_TOKEN"),
        (403, True, "the broker does not admit this client; ask its operator"),
    ],
)
def test_refusal_hint_names_the_fix(status: int, token_given: bool, hint: str) -> None:
    refused = ConnectFailed("refused", status=status, reason="why")

    assert refusal_hint(refused, token_given=token_given) == hint


def test_other_failures_get_no_refusal_hint() -> None:
    assert refusal_hint(ConnectFailed("cannot connect"), token_given=False) is None
    assert refusal_hint(NotMember("not_member", "no"), token_given=False) is None


_ROOM = RoomPresence(
    "lobby", 3, 1, (Member("s-1", "ann"), Member("s-2", None), Member("s-3", "ann"))
)


def test_who_lines_give_session_and_user_then_the_counts() -> None:
    assert presence_lines(_ROOM, asker="s-2") == [
        "s-1 ann",
        "s-2 -",
        "s-3 ann",
        "3 sessions, 1 user (this tool's session s-2 included)",
    ]


def test_who_counts_line_says_how_many_are_listed_when_truncated() -> None:
    truncated = RoomPresence("big", 1200, 1, (Member("s-1", None),), truncated=True)

    assert presence_lines(truncated, asker="s-9")[-1] == (
        "1200 sessions, 1 user (1 listed; this tool's session s-9 included)"
    )


def test_who_json_lists_user_only_where_known_and_no_truncated_when_complete() -> None:
    assert msgspec.json.decode(presence_json(_ROOM)) == {
        "room": "lobby",
        "count": 3,
        "users": 1,
        "members": [
            {"session": "s-1", "user": "ann"},
            {"session": "s-2"},
            {"session": "s-3", "user": "ann"},
        ],
    }


def test_who_json_says_truncated_when_it_is() -> None:
    truncated = RoomPresence("big", 1200, 0, (Member("s-1", None),), truncated=True)

    assert msgspec.json.decode(presence_json(truncated))["truncated"] is True
