"""The server API's key (``--api-key``): who may call ``POST /publish`` and
the read endpoints (docs/HISTORY-PRESENCE.md, "Server API")."""

from __future__ import annotations

import hmac

from broker.http_answer import HttpAnswer, error_answer
from broker.tokens import HeaderLookup, Refusal, bearer_token
from protocol import ErrorCode

__all__ = ["ApiKey"]


class ApiKey:
    """Checks the bearer key of a server-API request.

    Args:
        key: the key a caller must present.
    """

    def __init__(self, key: str) -> None:
        self._key = key.encode()

    def refusal(self, headers: HeaderLookup) -> HttpAnswer | None:
        """``None`` if ``headers`` carry the key, else the 401 to answer."""
        token = bearer_token(headers)
        if token is None:
            return _unauthorized("an API key is required: Authorization: Bearer <key>")
        if isinstance(token, Refusal):
            return _unauthorized(token.reason)
        # Constant time: the comparison must not tell how much of a guess matched.
        if not hmac.compare_digest(token.encode(), self._key):
            return _unauthorized("wrong API key")
        return None


def _unauthorized(message: str) -> HttpAnswer:
    # RFC 6750, section 3: a 401 names the scheme the client should use.
    challenge = ("WWW-Authenticate", 'Bearer realm="roomcast"')
    return error_answer(401, ErrorCode.UNAUTHORIZED, message, headers=(challenge,))
