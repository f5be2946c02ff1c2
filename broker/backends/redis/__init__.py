"""Redis pub/sub backend: the only package that imports ``redis``.

:mod:`.backend` (subscriptions, batched reader, canary, health),
:mod:`.publisher` (pipelined publishes), :mod:`.presence` (crash recovery),
:mod:`.client` (client factory and redis-py shims).
"""

from broker.backends.redis.backend import RedisBackend
from broker.backends.redis.client import ClientFactory, redis_client_factory

__all__ = ["ClientFactory", "RedisBackend", "redis_client_factory"]
