"""The JSON bodies of the node's plain-HTTP side (docs/PROTOCOL-ADDITIONS.md,
"HTTP error bodies"): one shape for every error, whatever the endpoint.

Every HTTP error answer is ``{"error": <code>, "message": <text>}``. ``error``
is one of the WebSocket error codes (:class:`~protocol.errors.ErrorCode`)
where one fits, else one of :class:`HttpErrorCode`. Handshake refusals (401,
403) also carry ``reason`` (the same text), the field they were first
documented with: fields are only ever added.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from protocol.errors import ErrorCode

__all__ = ["HttpError", "HttpErrorCode", "http_error_body"]


class HttpErrorCode(StrEnum):
    """Error codes that exist only on the HTTP side."""

    BAD_REQUEST = "bad_request"
    """The request is not valid HTTP/1.1 (RFC 9112)."""
    NOT_FOUND = "not_found"
    """No such endpoint, or the endpoint is not enabled on this node."""
    METHOD_NOT_ALLOWED = "method_not_allowed"
    """The endpoint exists, but not for this method (see ``Allow``)."""
    LENGTH_REQUIRED = "length_required"
    """A body without ``Content-Length``."""
    BODY_TOO_LARGE = "body_too_large"
    """The body is over ``--max-message-size``."""
    HEADER_TOO_LARGE = "header_too_large"
    """The request line and headers are over the node's head limit."""
    NOT_IMPLEMENTED = "not_implemented"
    """A transfer coding or feature the node does not implement."""
    DRAINING = "draining"
    """The node is shutting down: connect to another one."""
    AT_CAPACITY = "at_capacity"
    """The node is at its connection limit: connect to another one."""


class HttpError(msgspec.Struct, omit_defaults=True):
    """The body of every HTTP error answer."""

    error: str
    message: str
    reason: str | None = None


_encoder = msgspec.json.Encoder()


def http_error_body(
    code: ErrorCode | HttpErrorCode, message: str, *, with_reason: bool = False
) -> bytes:
    """Encode one HTTP error body (``with_reason``: also as ``reason``, for 401/403)."""
    return _encoder.encode(
        HttpError(error=code.value, message=message, reason=message if with_reason else None)
    )
