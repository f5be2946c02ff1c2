"""Redis sharded pub/sub backend: the only package that imports ``redis``.

:mod:`.backend` (assembles the parts into a ``Backend``), :mod:`.subscriber`
(subscriptions and the batched reader, with :mod:`.confirmations`),
:mod:`.canary` (deaf-node detection and readiness), :mod:`.publisher`
(pipelined publishes), :mod:`.scripts` and :mod:`.history` (positions and
history, atomically with the publish), :mod:`.presence` (crash recovery),
:mod:`.envelope` (key and channel names, the payload format), :mod:`.errors`
(one-line failure messages), :mod:`.client` (client factory and shims).
On a Redis Cluster: :mod:`.cluster` (the backend), :mod:`.cluster_shard`
(one master's connections, reader and canary), :mod:`.cluster_router`
(routing and redirects), :mod:`.cluster_topology` (who owns which slot),
:mod:`.cluster_client` (seeds, clients, startup checks).
"""

from broker.backends.redis.backend import RedisBackend
from broker.backends.redis.client import ClientFactory, redis_client_factory
from broker.backends.redis.cluster import RedisClusterBackend
from broker.backends.redis.cluster_client import ClusterSeeds

__all__ = [
    "ClientFactory",
    "ClusterSeeds",
    "RedisBackend",
    "RedisClusterBackend",
    "redis_client_factory",
]
