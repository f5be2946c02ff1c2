"""protocol.codec's presence encoding (docs/HISTORY-PRESENCE.md, "Presence"
and "Server API"): the reply a client decodes, and the HTTP body beside it."""

from __future__ import annotations

import json

import msgspec

from protocol import (
    ErrorCode,
    PresenceMember,
    PresenceReply,
    ProtocolError,
    decode_request,
    decode_server_message,
)
from protocol.codec import encode_presence

MEMBERS = [("s-77e1", "alice"), ("s-12ab", "alice"), ("s-9c0d", None)]


def test_the_reply_decodes_as_the_contract_example() -> None:
    frame = encode_presence("lobby", 3, 2, MEMBERS, False, 7)
    assert decode_server_message(frame) == PresenceReply(
        ref=7,
        room="lobby",
        count=3,
        users=2,
        members=[
            PresenceMember("s-77e1", "alice"),
            PresenceMember("s-12ab", "alice"),
            PresenceMember("s-9c0d"),
        ],
    )


def test_an_anonymous_member_has_no_user_field() -> None:
    frame = json.loads(encode_presence("lobby", 1, 0, [("s-9c0d", None)], False, 1))
    assert frame["members"] == [{"session": "s-9c0d"}]


def test_truncated_is_written_only_when_true() -> None:
    whole = json.loads(encode_presence("lobby", 1, 0, [("s-1", None)], False, 1))
    cut = json.loads(encode_presence("lobby", 2, 0, [("s-1", None)], True, 1))
    assert "truncated" not in whole
    assert cut["truncated"] is True


def test_a_reply_without_ref_carries_ref_null() -> None:
    assert json.loads(encode_presence("lobby", 0, 0, [], False))["ref"] is None


def test_the_http_body_is_the_reply_without_type_and_ref() -> None:
    reply = json.loads(encode_presence("lobby", 3, 2, MEMBERS, True, 7))
    body = json.loads(encode_presence("lobby", 3, 2, MEMBERS, True, 7, http=True))
    del reply["type"], reply["ref"]
    assert body == reply


def test_the_http_body_has_every_field_of_the_reply_but_type_and_ref() -> None:
    # Keeps protocol.codec's _PresenceBody in step with PresenceReply.
    reply_fields = {field.encode_name for field in msgspec.structs.fields(PresenceReply)}
    body = json.loads(encode_presence("lobby", 2, 1, [("s-1", "a")], True, http=True))
    assert set(body) == reply_fields - {"ref"}


def test_presence_of_a_bad_room_is_bad_room_echoing_the_ref() -> None:
    error = decode_request('{"type":"presence","room":"no spaces","ref":3}')
    assert isinstance(error, ProtocolError)
    assert (error.code, error.ref) == (ErrorCode.BAD_ROOM, 3)
