"""Property-based fuzzing of the request decoder: whatever a client sends,
``decode_request`` returns a request or a ``ProtocolError`` with a contract
code, and never raises (protocol/codec.py; PROTOCOL.md, "Error codes")."""

from __future__ import annotations

import json
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import ClientMessage, ErrorCode, ProtocolError, Say, decode_request, is_valid_room

REQUEST_TYPES = get_args(ClientMessage)
VALID_FRAMES = [
    '{"type":"join","room":"lobby","ref":1}',
    '{"type":"leave","room":"a.b:c@d-e_f","ref":"r-1"}',
    '{"type":"say","room":"lobby","body":{"text":"h\\u00e9llo","n":[1,2.5,null,true]},"ref":7}',
    '{"type":"say","room":"lobby","body":"caf\u00e9 \u2603"}',
    '{"type":"ping"}',
]
FUZZ = settings(max_examples=300, deadline=None)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
requestish = st.fixed_dictionaries(
    {"type": st.sampled_from(["join", "leave", "say", "ping", "joined", "nope", ""])},
    optional={"room": json_values, "body": json_values, "ref": json_values, "extra": json_values},
)


def assert_contract(result: Any) -> None:
    """A typed request with a valid room and a UTF-8 body, or a contract error."""
    if isinstance(result, ProtocolError):
        assert isinstance(result.code, ErrorCode), result
        assert result.ref is None or type(result.ref) in (int, str), result
        assert not isinstance(result.ref, str) or len(result.ref) <= 64, result
        return
    assert isinstance(result, REQUEST_TYPES), result
    room = getattr(result, "room", None)
    assert room is None or is_valid_room(room), result
    if isinstance(result, Say):
        bytes(result.body).decode()  # fanned out as a text frame: must be UTF-8


def decode(frame: bytes | str) -> Any:
    result = decode_request(frame)
    assert_contract(result)
    return result


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_decode_to_a_request_or_a_contract_error(frame: bytes) -> None:
    decode(frame)


@FUZZ
@given(st.text(max_size=512))
def test_random_text_decodes_to_a_request_or_a_contract_error(frame: str) -> None:
    decode(frame)


@FUZZ
@given(requestish)
def test_request_shaped_json_decodes_to_a_request_or_a_contract_error(
    request: dict[str, Any],
) -> None:
    decode(json.dumps(request))
    decode(json.dumps(request).encode())


@FUZZ
@given(
    st.sampled_from(VALID_FRAMES).flatmap(lambda f: st.tuples(st.just(f), st.integers(0, len(f))))
)
def test_truncated_valid_frame_decodes_to_a_request_or_a_contract_error(
    cut: tuple[str, int],
) -> None:
    frame, length = cut
    decode(frame[:length])
    decode(frame.encode()[:length])  # may also cut a UTF-8 sequence in half


@FUZZ
@given(
    st.sampled_from(VALID_FRAMES),
    st.data(),
    st.binary(min_size=1, max_size=8),
)
def test_valid_frame_with_bytes_spliced_in_decodes_to_a_request_or_a_contract_error(
    frame: str, data: st.DataObject, noise: bytes
) -> None:
    raw = frame.encode()
    at = data.draw(st.integers(0, len(raw)))
    decode(raw[:at] + noise + raw[at:])


@pytest.mark.parametrize(
    "frame",
    [
        b'{"type":"join","room":"\xff"}',
        b'{"type":"say","room":"a","body":"\xc3"}',
        b'{"type":"say","room":"a","body":"\xed\xa0\x80"}',  # an encoded surrogate
        b'{"type":"ping","ref":"\xf8\x88\x80\x80\x80"}',
        b'{"type":"say","room":"a","body":{"\xfe":1}}',
    ],
    ids=["room", "truncated-sequence", "surrogate", "overlong", "key"],
)
def test_invalid_utf8_is_bad_json(frame: bytes) -> None:
    result = decode(frame)

    assert isinstance(result, ProtocolError) and result.code is ErrorCode.BAD_JSON, result


@pytest.mark.parametrize(
    ("field", "expected"),
    [("room", ErrorCode.BAD_ROOM), ("ref", ErrorCode.BAD_MESSAGE), ("body", None)],
)
def test_huge_strings_are_decoded_or_refused_without_raising(
    field: str, expected: ErrorCode | None
) -> None:
    request: dict[str, Any] = {"type": "say", "room": "lobby", "body": "b", "ref": 1}
    request[field] = "x" * 1_000_000

    result = decode(json.dumps(request))

    if expected is None:
        assert isinstance(result, Say)
    else:
        assert isinstance(result, ProtocolError) and result.code is expected, result


NESTING = 10_000


@pytest.mark.parametrize(
    "frame",
    [
        "[" * NESTING + "]" * NESTING,
        '{"a":' * NESTING + "1" + "}" * NESTING,
        '{"type":"say","room":"a","body":' + "[" * NESTING + "]" * NESTING + "}",
        '{"type":"join","room":"a","extra":' + "[" * NESTING + "]" * NESTING + "}",
        '{"type":"join","room":"a","ref":' + "[" * NESTING + "]" * NESTING + "}",
    ],
    ids=["array", "object", "say-body", "unknown-field", "ref"],
)
def test_deeply_nested_json_is_refused_without_raising(frame: str) -> None:
    """10,000 nested arrays fit in a 64 KiB frame; msgspec raises
    ``RecursionError`` past about 1,000 levels, even when it only skips a
    ``Raw`` body or an unknown field (found by this test, fixed in
    protocol/codec.py)."""
    result = decode(frame)

    assert isinstance(result, ProtocolError), result
    assert result.code in {ErrorCode.BAD_JSON, ErrorCode.BAD_MESSAGE}, result


def test_reasonably_nested_body_is_passed_through_untouched() -> None:
    body = "[" * 100 + "]" * 100

    result = decode('{"type":"say","room":"a","body":' + body + "}")

    assert isinstance(result, Say) and bytes(result.body) == body.encode()
