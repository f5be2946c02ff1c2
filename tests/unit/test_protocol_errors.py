"""protocol.errors: a ProtocolError carries its wire code, text and ref."""

from __future__ import annotations

from protocol import ErrorCode, ProtocolError


def test_a_protocol_error_carries_code_message_and_ref() -> None:
    error = ProtocolError(ErrorCode.NOT_MEMBER, "not a member of room 'r'", 7)

    assert (error.code, error.message, error.ref) == (
        ErrorCode.NOT_MEMBER,
        "not a member of room 'r'",
        7,
    )
    assert str(error) == "not a member of room 'r'"


def test_its_repr_shows_the_wire_code_message_and_ref() -> None:
    error = ProtocolError(ErrorCode.BAD_ROOM, "bad room", "a")

    assert repr(error) == "ProtocolError('bad_room', 'bad room', ref='a')"
