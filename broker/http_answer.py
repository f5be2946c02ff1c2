"""HTTP answers of the node, as plain data: a status, headers and a body,
serialized the same way by the plain-HTTP handler, the head reader and the
WebSocket handshake.

No I/O. Every answer closes the connection (one request per connection,
docs/PROTOCOL-ADDITIONS.md, "HTTP error bodies"), and every error body has the
one JSON shape of :func:`protocol.http_error_body`.
"""

from __future__ import annotations

import http
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import msgspec

from protocol import ErrorCode, HttpErrorCode, http_error_body

__all__ = ["JSON", "HttpAnswer", "error_answer", "json_answer"]

JSON: Final = "application/json"

Header = tuple[str, str]


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """A complete HTTP response that closes the connection.

    Attributes:
        status: the status code.
        body: the body (also announced, without being sent, to a ``HEAD``).
        content_type: the body's media type.
        headers: extra headers (``Allow``, ``WWW-Authenticate``, ...).
    """

    status: int
    body: bytes
    content_type: str = JSON
    headers: Sequence[Header] = field(default=())

    def header_list(self) -> list[Header]:
        """Every header of the answer, in the order they are sent."""
        return [
            ("Content-Type", self.content_type),
            ("Content-Length", str(len(self.body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
            *self.headers,
        ]

    def serialize(self, *, head_only: bool = False) -> bytes:
        """The bytes to write; ``head_only`` for a ``HEAD`` (RFC 9110, 9.3.2)."""
        reason = http.HTTPStatus(self.status).phrase
        lines = [f"HTTP/1.1 {self.status} {reason}"]
        lines += [f"{name}: {value}" for name, value in self.header_list()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body


def error_answer(
    status: int,
    code: ErrorCode | HttpErrorCode,
    message: str,
    *,
    headers: Sequence[Header] = (),
    with_reason: bool = False,
) -> HttpAnswer:
    """An error answer with the one JSON error body (``{"error","message"}``)."""
    return HttpAnswer(
        status, http_error_body(code, message, with_reason=with_reason), JSON, headers
    )


def json_answer(status: int, body: object, headers: Sequence[Header] = ()) -> HttpAnswer:
    """An answer whose body is ``body`` encoded as JSON."""
    return HttpAnswer(status, msgspec.json.encode(body), JSON, headers)
