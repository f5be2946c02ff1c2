"""Every error code of the contract maps to its exception class
(PROTOCOL.md, "Error codes")."""

from __future__ import annotations

import pytest

from protocol import ErrorCode
from roomcast_client import (
    BadRequest,
    BrokerError,
    ClientError,
    Forbidden,
    InternalError,
    NotMember,
    RateLimited,
    RequestTimeout,
    TooManyRooms,
    Unauthorized,
    Unavailable,
)
from roomcast_client.errors import error_for

EXPECTED = {
    ErrorCode.BAD_JSON: BadRequest,
    ErrorCode.BAD_MESSAGE: BadRequest,
    ErrorCode.BAD_ROOM: BadRequest,
    ErrorCode.NOT_MEMBER: NotMember,
    ErrorCode.TOO_MANY_ROOMS: TooManyRooms,
    ErrorCode.RATE_LIMITED: RateLimited,
    ErrorCode.UNAUTHORIZED: Unauthorized,
    ErrorCode.FORBIDDEN: Forbidden,
    ErrorCode.UNAVAILABLE: Unavailable,
    ErrorCode.INTERNAL: InternalError,
}


def test_every_contract_code_has_its_class() -> None:
    assert set(EXPECTED) == set(ErrorCode)


@pytest.mark.parametrize("code", list(ErrorCode))
def test_error_reply_becomes_its_class_with_code_and_message(code: ErrorCode) -> None:
    error = error_for(code.value, "why")

    assert type(error) is EXPECTED[code]
    assert isinstance(error, BrokerError)
    assert (error.code, error.message) == (code.value, "why")


def test_unknown_code_becomes_the_base_class() -> None:
    error = error_for("from_the_future", "new")

    assert type(error) is BrokerError
    assert error.code == "from_the_future"


def test_request_timeout_is_a_timeout_error() -> None:
    assert issubclass(RequestTimeout, TimeoutError)
    assert issubclass(RequestTimeout, ClientError)
