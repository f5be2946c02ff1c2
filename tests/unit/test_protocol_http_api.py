"""protocol.http_api: every HTTP error body has one shape (docs/PROTOCOL-ADDITIONS.md,
"HTTP error bodies")."""

from __future__ import annotations

import json

from protocol import ErrorCode, HttpErrorCode, http_error_body


def test_an_error_body_has_the_code_and_the_message() -> None:
    body = http_error_body(HttpErrorCode.NOT_FOUND, "no such endpoint")

    assert json.loads(body) == {"error": "not_found", "message": "no such endpoint"}


def test_a_websocket_error_code_is_written_as_its_wire_value() -> None:
    body = http_error_body(ErrorCode.UNAVAILABLE, "Redis is unreachable")

    assert json.loads(body)["error"] == "unavailable"


def test_a_handshake_refusal_also_carries_the_message_as_reason() -> None:
    body = http_error_body(ErrorCode.UNAUTHORIZED, "a token is required", with_reason=True)

    assert json.loads(body) == {
        "error": "unauthorized",
        "message": "a token is required",
        "reason": "a token is required",
    }
