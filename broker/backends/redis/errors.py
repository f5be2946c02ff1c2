"""One line that says why Redis refused or could not be reached.

An operator who mistyped a password must read "authentication failed", not
"cannot reach Redis" above a traceback. The line names the address and the
ACL user, never the password. redis-py 8 shows an exception as
``auth:AuthenticationError`` (its ``repr``): :func:`brief` keeps the text.
"""

from __future__ import annotations

import os
import ssl
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["brief", "explain", "subscription_lost"]

E = TypeVar("E", bound=BaseException)


def brief(exc: BaseException) -> str:
    """``Type: message`` of ``exc`` (for log lines)."""
    name, text = type(exc).__name__, str(exc)
    code = getattr(exc, "status_code", None)  # WRONGPASS, NOPERM... (redis-py 8)
    if code:
        name = f"{name} ({code})"
    return f"{name}: {text}" if text else name


def explain(exc: BaseException, client: aioredis.Redis) -> str:
    """Why ``client`` failed with ``exc``, in one line for an operator."""
    pool = client.connection_pool
    settings: dict[str, Any] = {"connection_class": pool.connection_class, **pool.connection_kwargs}
    where = _address(settings)
    user = settings.get("username") or "default"
    if isinstance(exc, NoPermissionError):
        return (
            f"Redis at {where} refused user {user!r} a command, key or channel the node "
            f"needs (NOPERM: {exc}); see the README's least-privilege ACL rule"
        )
    if isinstance(exc, AuthenticationError):
        if not settings.get("password"):
            return (
                f"Redis authentication failed at {where}: Redis requires a password and "
                "the URL gives none (NOAUTH): put USER:PASSWORD@ before the host in the URL"
            )
        code = getattr(exc, "status_code", None) or "WRONGPASS"
        return f"Redis authentication failed at {where} for user {user!r} ({code}: {exc})"
    tls_error = _cause(exc, ssl.SSLError)
    if tls_error is not None:
        return f"TLS with Redis at {where} failed: {tls_error}"
    timed_out = isinstance(exc, RedisTimeoutError) or _cause(exc, TimeoutError) is not None
    if _uses_tls(settings) and timed_out:
        return f"TLS with Redis at {where} failed: no handshake answer (is it a TLS port?)"
    os_error = _cause(exc, OSError)
    network = isinstance(exc, RedisConnectionError | RedisTimeoutError)
    if os_error is not None or network or not isinstance(exc, RedisError):
        reason = _os_reason(os_error) or str(exc) or type(exc).__name__
        if not _uses_tls(settings) and isinstance(os_error, ConnectionResetError):
            reason += " (if that port speaks TLS, use a rediss:// URL)"
        return f"cannot reach Redis at {where}: {reason}"
    code = getattr(exc, "status_code", None)
    return f"Redis at {where} refused: {code + ' ' if code else ''}{exc}"


def subscription_lost(exc: BaseException) -> str:
    """Why the subscriber connection failed, for the log."""
    if isinstance(exc, ResponseError):
        # An error reply on a subscriber connection is a refused SUBSCRIBE:
        # an ACL without the right to a channel (NOPERM).
        return (
            f"redis refused a subscription ({brief(exc)}); the node stays not ready "
            "until it may subscribe to its channels"
        )
    return f"redis subscriber connection lost: {brief(exc)}"


def _os_reason(error: OSError | None) -> str:
    # asyncio says "Connect call failed ('127.0.0.1', 6379)" and uvloop
    # "Connection refused" for one errno: name the errno the same way.
    if error is None:
        return ""
    if error.errno is not None and error.errno > 0:
        return f"[Errno {error.errno}] {os.strerror(error.errno)}"
    return str(error)


def _address(settings: dict[str, Any]) -> str:
    path = settings.get("path")
    if path:
        return str(path)
    scheme = "rediss" if _uses_tls(settings) else "redis"
    return f"{scheme}://{settings.get('host', 'localhost')}:{settings.get('port', 6379)}"


def _uses_tls(settings: dict[str, Any]) -> bool:
    connection_class = settings.get("connection_class")
    return isinstance(connection_class, type) and issubclass(connection_class, SSLConnection)


def _cause(exc: BaseException, kind: type[E]) -> E | None:
    # redis-py wraps the socket's own error (raise ... from, or inside except).
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
