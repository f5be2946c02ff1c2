"""protocol.messages: every wire message survives encode -> decode, with the
wire names and null fields PROTOCOL.md prescribes."""

from __future__ import annotations

import json

import msgspec
import pytest

from protocol import (
    PROTOCOL_VERSION,
    ClientMessage,
    Error,
    Join,
    Joined,
    Leave,
    Left,
    Message,
    Ok,
    Ping,
    Pong,
    Say,
    ServerMessage,
    Welcome,
    decode_request,
    decode_server_message,
    encode,
)

CLIENT_MESSAGES: list[ClientMessage] = [
    Join(room="lobby", ref=1),
    Join(room="lobby"),
    Leave(room="a.b:c@d-e_f", ref="r-1"),
    Say(room="lobby", body=msgspec.Raw(b'{"text":"hi"}'), ref=2),
    Say(room="lobby", body=msgspec.Raw(b"null")),
    Ping(ref="keepalive"),
    Ping(),
]

SERVER_MESSAGES: list[ServerMessage] = [
    Welcome(session="s-1", node="n-1"),
    Ok(ref=1),
    Ok(ref="a"),
    Error(ref=3, code="not_member", message="not a member of room 'nope'"),
    Error(ref=None, code="bad_json", message="..."),
    Pong(ref=7),
    Pong(ref=None),
    Message(room="lobby", from_="s-2", body=msgspec.Raw(b"[1,2,3]")),
    Joined(room="lobby", session="s-3"),
    Left(room="lobby", session="s-3"),
]


@pytest.mark.parametrize("message", CLIENT_MESSAGES, ids=repr)
def test_client_message_round_trips(message: ClientMessage) -> None:
    assert decode_request(encode(message)) == message


@pytest.mark.parametrize("message", SERVER_MESSAGES, ids=repr)
def test_server_message_round_trips(message: ServerMessage) -> None:
    assert decode_server_message(encode(message)) == message


@pytest.mark.parametrize("message", [*CLIENT_MESSAGES, *SERVER_MESSAGES], ids=repr)
def test_type_tag_is_written_first(message: ClientMessage | ServerMessage) -> None:
    assert encode(message).startswith(b'{"type":"')


def test_message_sender_goes_out_as_from() -> None:
    wire = json.loads(encode(Message(room="r", from_="s-9", body=msgspec.Raw(b"1"))))
    assert wire == {"type": "message", "room": "r", "from": "s-9", "body": 1}


def test_message_sender_is_read_from_from() -> None:
    frame = b'{"type":"message","room":"r","from":"s-9","body":1}'
    decoded = decode_server_message(frame)
    assert isinstance(decoded, Message)
    assert decoded.from_ == "s-9"


def test_error_without_ref_writes_ref_as_null() -> None:
    wire = json.loads(encode(Error(ref=None, code="bad_json", message="m")))
    assert wire == {"type": "error", "ref": None, "code": "bad_json", "message": "m"}


def test_pong_without_ref_writes_ref_as_null() -> None:
    assert json.loads(encode(Pong(ref=None))) == {"type": "pong", "ref": None}


def test_pong_echoes_a_string_ref() -> None:
    assert json.loads(encode(Pong(ref="abc"))) == {"type": "pong", "ref": "abc"}


def test_welcome_carries_protocol_version_1() -> None:
    wire = json.loads(encode(Welcome(session="s-1", node="n-1")))
    assert wire == {"type": "welcome", "session": "s-1", "node": "n-1", "protocol": 1}
    assert PROTOCOL_VERSION == 1


@pytest.mark.parametrize(
    "body",
    [
        b'{"b": 2,  "a": [1, {"c": null}]}',
        b"[ 3, 2, 1 ]",
        b'"caf\\u00e9 \xe2\x98\x95"',
        b"null",
        b"-1.50e+3",
        b"12345678901234567890123",
        b"true",
    ],
)
def test_say_body_is_kept_as_the_exact_bytes_sent(body: bytes) -> None:
    frame = b'{"type":"say","room":"r","body":' + body + b',"ref":1}'
    request = decode_request(frame)
    assert isinstance(request, Say)
    assert bytes(request.body) == body


@pytest.mark.parametrize("body", [b'{"z": 1, "a":  [ ] }', b'"x"', b"null", b"0.1"])
def test_message_body_is_written_as_the_exact_bytes_given(body: bytes) -> None:
    wire = encode(Message(room="r", from_="s", body=msgspec.Raw(body)))
    assert wire == b'{"type":"message","room":"r","from":"s","body":' + body + b"}"


def test_server_message_decoder_ignores_unknown_fields() -> None:
    assert decode_server_message(b'{"type":"ok","ref":1,"shard":99}') == Ok(ref=1)
