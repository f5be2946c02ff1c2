"""Everything the SDK raises, and the mapping from a server's error code to
its exception class.

Two families, so that callers can tell whose fault a failure is:

* :class:`BrokerError` and its subclasses: the broker answered the request
  with an ``error`` reply (PROTOCOL.md, "Error codes"); the connection stays
  open and the client goes on working.
* The other :class:`ClientError` subclasses: no answer came (timeout, the
  connection was lost with the request in flight, or the client has ended).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BadRequest",
    "BrokerError",
    "ClientClosed",
    "ClientError",
    "ConnectFailed",
    "ConnectionLost",
    "Forbidden",
    "InternalError",
    "NotMember",
    "RateLimited",
    "RequestTimeout",
    "TooManyRooms",
    "Unauthorized",
    "Unavailable",
    "error_for",
]


class ClientError(Exception):
    """Base class of every exception the SDK raises on purpose."""


class BrokerError(ClientError):
    """The broker answered a request with an ``error`` reply.

    Attributes:
        code: the wire code, e.g. ``"not_member"``.
        message: the broker's human-readable explanation.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class BadRequest(BrokerError):
    """``bad_json``, ``bad_message`` or ``bad_room``: the request was malformed."""


class NotMember(BrokerError):
    """``not_member``: a request about a room the session is not in (``leave``,
    ``say``, ``history``, ``presence``)."""


class TooManyRooms(BrokerError):
    """``too_many_rooms``: the session is at its room limit."""


class RateLimited(BrokerError):
    """``rate_limited``: the session says faster than the broker allows."""


class Unauthorized(BrokerError):
    """``unauthorized``: no valid credentials where the broker requires them."""


class Forbidden(BrokerError):
    """``forbidden``: the credentials do not allow this room."""


class Unavailable(BrokerError):
    """``unavailable``: the broker's backend could not take the request; nothing was sent."""


class InternalError(BrokerError):
    """``internal``: the broker failed; it logged the details with the session id."""


class RequestTimeout(ClientError, TimeoutError):
    """No reply within the request's timeout (which includes waiting for a reconnect)."""


class ConnectionLost(ClientError):
    """The connection ended while the request was in flight.

    Its outcome is unknown: a ``say`` may or may not have been published.
    The client reconnects on its own; the request may be sent again.
    """


class ClientClosed(ClientError):
    """The client has ended: closed by the application, or it stopped reconnecting.

    Attributes:
        code: the WebSocket close code that ended it, or ``None`` when the
            application closed it or reconnecting gave up.
        reason: why, in words.
    """

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason if code is None else f"{reason} (close code {code})")
        self.code = code
        self.reason = reason


class ConnectFailed(ClientError):
    """No connection could be opened (the cause is chained).

    When the broker refused the handshake for who the client is (HTTP 401 or
    403: a token missing, invalid or expired, an origin not allowed),
    :attr:`status` and :attr:`reason` say so; retrying with the same
    credentials would be refused again.

    Attributes:
        status: the HTTP status of a refused handshake, else ``None``.
        reason: the broker's explanation of that refusal (the ``reason`` or
            ``message`` field of its JSON body), else ``None``.
    """

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason


_BY_CODE: Final[dict[str, type[BrokerError]]] = {
    "bad_json": BadRequest,
    "bad_message": BadRequest,
    "bad_room": BadRequest,
    "not_member": NotMember,
    "too_many_rooms": TooManyRooms,
    "rate_limited": RateLimited,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "unavailable": Unavailable,
    "internal": InternalError,
}


def error_for(code: str, message: str) -> BrokerError:
    """The exception for an ``error`` reply.

    Args:
        code: the reply's ``code``.
        message: the reply's ``message``.

    Returns:
        An instance of the subclass for ``code``, or of :class:`BrokerError`
        itself for a code this SDK does not know (a newer broker may add some).
    """
    return _BY_CODE.get(code, BrokerError)(code, message)
