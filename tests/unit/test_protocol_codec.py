"""protocol.codec: every bad frame becomes a typed error, never an exception
(PROTOCOL.md, "Error codes"), and the request's ``ref`` is echoed when it can
be read."""

from __future__ import annotations

import json

import msgspec
import pytest

from protocol import (
    ErrorCode,
    HistoryReply,
    Join,
    Leave,
    Message,
    Ping,
    ProtocolError,
    Say,
    decode_request,
    decode_server_message,
    encode,
    encode_history,
    error_frame,
    sender_of,
    with_position,
)


def _error(frame: bytes | str) -> ProtocolError:
    result = decode_request(frame)
    assert isinstance(result, ProtocolError), result
    return result


# --- bad_json ------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [b"{not json", b"", b"{", b'{"type":"ping"} trailing', b'{"type":"say","room":"r","body":[1,}'],
)
def test_malformed_json_is_bad_json(frame: bytes) -> None:
    assert _error(frame).code is ErrorCode.BAD_JSON


def test_malformed_json_text_frame_is_bad_json() -> None:
    assert _error("{not json").code is ErrorCode.BAD_JSON


def test_malformed_json_is_bad_json_even_after_a_bad_type() -> None:
    assert _error(b'{"type":"nope", garbage').code is ErrorCode.BAD_JSON


def test_bytes_that_are_not_utf8_are_bad_json() -> None:
    assert _error(b"\xff\xfe").code is ErrorCode.BAD_JSON


def test_non_utf8_bytes_inside_a_room_name_are_bad_json() -> None:
    assert _error(b'{"type":"join","room":"a\xff","ref":1}').code is ErrorCode.BAD_JSON


def test_non_utf8_bytes_inside_a_say_body_are_bad_json() -> None:
    assert _error(b'{"type":"say","room":"a","body":"\xff"}').code is ErrorCode.BAD_JSON


def test_bad_json_has_null_ref() -> None:
    assert _error(b'{"type":"ping","ref":5').ref is None


# --- bad_message ---------------------------------------------------------------


@pytest.mark.parametrize("frame", [b"[1,2]", b'"ping"', b"42", b"null", b"true"])
def test_json_that_is_not_an_object_is_bad_message(frame: bytes) -> None:
    assert _error(frame).code is ErrorCode.BAD_MESSAGE


def test_unknown_type_is_bad_message_naming_type() -> None:
    error = _error(b'{"type":"shout","room":"r","ref":1}')
    assert error.code is ErrorCode.BAD_MESSAGE
    assert "type" in error.message


def test_missing_type_is_bad_message_naming_type() -> None:
    error = _error(b'{"room":"r","ref":1}')
    assert error.code is ErrorCode.BAD_MESSAGE
    assert "type" in error.message


def test_non_string_type_is_bad_message_naming_type() -> None:
    error = _error(b'{"type":5}')
    assert error.code is ErrorCode.BAD_MESSAGE
    assert "type" in error.message


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        (b'{"type":"join","ref":1}', "room"),
        (b'{"type":"leave","ref":1}', "room"),
        (b'{"type":"say","room":"r","ref":1}', "body"),
        (b'{"type":"say","body":1,"ref":1}', "room"),
    ],
)
def test_missing_field_is_bad_message_naming_it(frame: bytes, field: str) -> None:
    error = _error(frame)
    assert error.code is ErrorCode.BAD_MESSAGE
    assert f"`{field}`" in error.message


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        (b'{"type":"join","room":5,"ref":1}', "room"),
        (b'{"type":"leave","room":["r"],"ref":1}', "room"),
        (b'{"type":"say","room":null,"body":1,"ref":1}', "room"),
        (b'{"type":"ping","ref":{"id":1}}', "ref"),
        (b'{"type":"ping","ref":1.5}', "ref"),
        (b'{"type":"ping","ref":true}', "ref"),
    ],
)
def test_mistyped_field_is_bad_message_naming_it(frame: bytes, field: str) -> None:
    error = _error(frame)
    assert error.code is ErrorCode.BAD_MESSAGE
    assert f"$.{field}" in error.message


def test_ref_longer_than_64_characters_is_bad_message() -> None:
    error = _error(b'{"type":"ping","ref":"' + b"x" * 65 + b'"}')
    assert error.code is ErrorCode.BAD_MESSAGE
    assert "ref" in error.message


def test_ref_of_64_characters_is_accepted() -> None:
    assert decode_request(b'{"type":"ping","ref":"' + b"x" * 64 + b'"}') == Ping(ref="x" * 64)


# --- bad_room ------------------------------------------------------------------


@pytest.mark.parametrize("type_", ["join", "leave"])
@pytest.mark.parametrize("room", ["", "a b", "r" * 129, "lobby\n", "café"])
def test_bad_room_name_is_bad_room(type_: str, room: str) -> None:
    frame = json.dumps({"type": type_, "room": room, "ref": 1})
    error = _error(frame)
    assert error.code is ErrorCode.BAD_ROOM
    assert error.ref == 1


def test_say_to_a_bad_room_name_is_bad_room() -> None:
    assert _error(b'{"type":"say","room":"no/slash","body":1}').code is ErrorCode.BAD_ROOM


# --- ref echo ------------------------------------------------------------------


@pytest.mark.parametrize("ref", [0, 7, -3, "abc", "", "x" * 64])
def test_readable_ref_is_echoed_in_a_bad_message(ref: int | str) -> None:
    frame = json.dumps({"type": "join", "room": 5, "ref": ref})
    assert _error(frame).ref == ref


@pytest.mark.parametrize("ref", ["x" * 65, 1.5, True, False, None, [1], {"a": 1}])
def test_unreadable_ref_is_null_in_a_bad_message(ref: object) -> None:
    frame = json.dumps({"type": "join", "room": 5, "ref": ref})
    assert _error(frame).ref is None


def test_ref_of_a_bad_room_request_is_echoed() -> None:
    assert _error(b'{"type":"leave","room":"!","ref":"mine"}').ref == "mine"


# --- tolerance -------------------------------------------------------------------


def test_unknown_extra_fields_are_ignored() -> None:
    frame = b'{"type":"join","room":"r","ref":1,"token":"x","nested":{"a":[1]}}'
    assert decode_request(frame) == Join(room="r", ref=1)


def test_fields_in_any_order_decode() -> None:
    assert decode_request(b'{"ref":2,"room":"r","type":"leave"}') == Leave(room="r", ref=2)


def test_null_ref_is_the_same_as_no_ref() -> None:
    assert decode_request(b'{"type":"ping","ref":null}') == Ping()


def test_say_decodes_from_a_text_frame() -> None:
    request = decode_request('{"type":"say","room":"r","body":"☕"}')
    assert isinstance(request, Say)
    assert bytes(request.body) == '"☕"'.encode()


# --- error_frame -----------------------------------------------------------------


def test_error_frame_writes_code_message_and_ref() -> None:
    frame = error_frame(ProtocolError(ErrorCode.NOT_MEMBER, "not a member", "r1"))
    assert json.loads(frame) == {
        "type": "error",
        "ref": "r1",
        "code": "not_member",
        "message": "not a member",
    }


def test_error_frame_without_ref_writes_null() -> None:
    frame = error_frame(ProtocolError(ErrorCode.BAD_JSON, "broken"))
    assert json.loads(frame)["ref"] is None


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    "frame",
    [b'{"type":"say","room":"r","body":' + DEEP + b"}", b'{"type":"join","x":' + DEEP + b"}"],
)
def test_json_nested_too_deeply_is_bad_json_not_a_crash(frame: bytes) -> None:
    error = _error(frame)

    assert (error.code, error.message) == (ErrorCode.BAD_JSON, "JSON is nested too deeply")


# --- positions (docs/HISTORY-PRESENCE.md) ------------------------------------------


def test_with_position_writes_offset_and_epoch_as_the_last_fields() -> None:
    payload = encode(Message(room="r", from_="s-1", body=msgspec.Raw(b"1")))
    framed = with_position(payload, 42, "e-9f")
    assert framed == payload[:-1] + b',"offset":42,"epoch":"e-9f"}'
    decoded = decode_server_message(framed)
    assert isinstance(decoded, Message)
    assert (decoded.offset, decoded.epoch) == (42, "e-9f")


def test_sender_of_reads_the_from_of_a_message_frame() -> None:
    payload = encode(Message(room="r", from_="s-77", body=msgspec.Raw(b"{}")))
    assert sender_of(payload) == "s-77"


def test_sender_of_a_frame_that_is_not_json_is_empty() -> None:
    assert sender_of(b"not json") == ""


def test_encode_history_keeps_the_frames_verbatim() -> None:
    frame = with_position(
        encode(Message(room="r", from_="s-1", body=msgspec.Raw(b"[ 1 ]"))), 3, "e"
    )
    reply = encode_history("r", (3, "e"), [frame], ref=9)
    assert reply.endswith(b'"messages":[' + frame + b"]}")
    decoded = decode_server_message(reply)
    assert isinstance(decoded, HistoryReply)
    assert (decoded.ref, decoded.offset, decoded.epoch, len(decoded.messages)) == (9, 3, "e", 1)


def test_encode_history_of_a_room_without_history_has_no_offset() -> None:
    assert encode_history("r", None, [], http=True) == b'{"room":"r","messages":[]}'
