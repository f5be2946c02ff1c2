"""Clients of a Redis Cluster: the seeds, one plain client per master, the
cluster client for keyed reads, and the startup checks, each failure in one
line (a seed that is not a cluster, slots without a master, no seed reachable).

Every client shares the first seed's scheme, credentials and TLS files, so
``rediss://user:pass@a:7000,rediss://user:pass@b:7000`` works as one
``--redis-url`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import ResponseError
from redis.maint_notifications import MaintNotificationsConfig

from broker.backends.base import BackendUnavailable
from broker.backends.redis.client import IO_ERRORS, ClientFactory, redis_client_factory
from broker.backends.redis.cluster_topology import SLOTS, Master, Topology
from broker.backends.redis.errors import explain

__all__ = ["ClusterSeeds", "read_slots"]


class ClusterSeeds:
    """Where the cluster is, and how to open clients to its nodes.

    Args:
        urls: the seed nodes' URLs (``redis://`` or ``rediss://``).
        timeout: seconds a connect or a command may take.
    """

    def __init__(self, urls: Sequence[str], timeout: float = 5.0) -> None:
        if not urls:
            raise ValueError("no seed URL")
        self.urls = list(urls)
        self._timeout = timeout

    def url_of(self, host: str, port: int) -> str:
        """The first seed's URL with ``host:port`` as its address."""
        parts = urlsplit(self.urls[0])
        auth, _, _ = parts.netloc.rpartition("@")
        netloc = f"{auth}@{host}:{port}" if auth else f"{host}:{port}"
        return urlunsplit((parts.scheme, netloc, "", parts.query, ""))

    def factory(self, master: Master) -> ClientFactory:
        """A factory of plain clients of one master (no retries of their own)."""
        return redis_client_factory(self.url_of(master.host, master.port), self._timeout)

    def cluster_client(self) -> RedisCluster:
        """The cluster client for keyed commands (history reads, presence,
        heartbeats): redis-py routes each by its key's slot and follows
        MOVED; it may retry, so only idempotent commands go through it."""
        nodes = [ClusterNode(*_address(url)) for url in self.urls]
        return RedisCluster.from_url(
            self.urls[0],
            startup_nodes=nodes,
            # A shard down must not stop the others: coverage is checked once,
            # at start (:meth:`topology`), not on every refresh.
            require_full_coverage=False,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            health_check_interval=0,
            driver_info=None,
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
        )

    async def topology(self, known: Sequence[Master] = (), *, complete: bool = False) -> Topology:
        """``CLUSTER SLOTS`` from the first node that answers: the ``known``
        masters first, then the seeds.

        Raises:
            BackendUnavailable: no node answered, a seed is not a cluster
                node, or (``complete``) some slots have no master; one line.
        """
        failures: list[str] = []
        addresses = [(m.host, m.port) for m in known] + [_address(url) for url in self.urls]
        for host, port in dict.fromkeys(addresses):
            client = self.factory(Master(host, port, ""))()
            try:
                reply = await read_slots(client)
            except ResponseError as exc:
                if "cluster support disabled" in str(exc).lower():
                    raise BackendUnavailable(
                        f"Redis at {host}:{port} is not a cluster node (cluster support "
                        "disabled): use --redis-url for a single Redis"
                    ) from exc
                failures.append(explain(exc, client))
                continue
            except IO_ERRORS as exc:
                failures.append(explain(exc, client))
                continue
            finally:
                await client.aclose()
            topology = Topology.parse(reply, host)
            covered = topology.covered()
            if complete and covered < SLOTS:
                raise BackendUnavailable(
                    f"the Redis Cluster at {host}:{port} serves only {covered} of {SLOTS} "
                    "slots: assign every slot (redis-cli --cluster fix) before starting"
                )
            return topology
        raise BackendUnavailable("no Redis Cluster node answered: " + "; ".join(failures))


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "localhost", parts.port or 6379


async def read_slots(client: aioredis.Redis) -> Any:
    """``CLUSTER SLOTS`` of the node ``client`` talks to (the raw reply)."""
    return await client.execute_command(b"CLUSTER", b"SLOTS")  # type: ignore[no-untyped-call]
