"""Error codes of the wire contract (PROTOCOL.md, "Error codes") and the
exception that carries one.

Every failure a client can be told about is a :class:`ProtocolError` with one
of these codes, so the code that sends the ``error`` reply never has to guess.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ErrorCode", "ProtocolError"]


class ErrorCode(StrEnum):
    """The ``code`` field of an ``error`` reply."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    BAD_ROOM = "bad_room"
    NOT_MEMBER = "not_member"
    TOO_MANY_ROOMS = "too_many_rooms"
    RATE_LIMITED = "rate_limited"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class ProtocolError(Exception):
    """A request failed with a contract error code.

    Attributes:
        code: the wire code.
        message: human-readable text for the ``message`` field.
        ref: the request's ``ref`` when it could be read, else ``None``.
    """

    def __init__(self, code: ErrorCode, message: str, ref: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref

    def __repr__(self) -> str:
        return f"ProtocolError({self.code.value!r}, {self.message!r}, ref={self.ref!r})"
