"""Clients of the Redis backend, and the small typing shims redis-py needs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError
from redis.maint_notifications import MaintNotificationsConfig

__all__ = ["IO_ERRORS", "ClientFactory", "aclose_pubsub", "as_bytes", "redis_client_factory"]

IO_ERRORS = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)
"""What a Redis call raises when Redis is unreachable, stalled or gone
(redis-py's cluster client raises RedisClusterException, not a RedisError,
when no node of the cluster answers)."""

ClientFactory = Callable[[], aioredis.Redis]


def redis_client_factory(url: str, timeout: float = 5.0) -> ClientFactory:
    """Return a factory of clients for ``url`` that never retry on their own
    (a retried PUBLISH could deliver a message twice).

    ``url`` is passed to redis-py's ``from_url``: ``rediss://`` for TLS, a
    user and password before the host, and TLS files as query parameters
    (``?ssl_ca_certs=...&ssl_certfile=...&ssl_keyfile=...``), as the README's
    security section shows.
    """

    def connect() -> aioredis.Redis:
        return aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            # No CLIENT SETINFO and no CLIENT MAINT_NOTIFICATIONS on connect:
            # the README's least-privilege ACL rule then lists exactly the
            # commands the node uses, and no denied command lands in ACL LOG
            # on every connection. (The node reconnects by itself when an
            # endpoint moves; it needs no maintenance notices for that.)
            driver_info=None,
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
        )

    return connect


def as_bytes(value: bytes | str) -> bytes:
    """A reply as bytes (redis-py types replies as either; ours are bytes)."""
    return value if isinstance(value, bytes) else value.encode()


async def aclose_pubsub(pubsub: PubSub) -> None:
    """Close a PubSub (redis-py leaves ``PubSub.aclose`` untyped)."""
    await pubsub.aclose()  # type: ignore[no-untyped-call]
