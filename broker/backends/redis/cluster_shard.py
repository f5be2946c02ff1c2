"""One shard (one master) of a Redis Cluster, as one node uses it: its own
publisher connection and pipeline, its own subscriber connection and reader
task, and its own canary, on a channel whose slot this master owns.

So a slow or failing shard delays only its own rooms: nothing one shard's
reader or pipeline waits for is shared with another shard's.

Invariants:
    * Every task started here is owned here and awaited by :meth:`Shard.close`.
    * :meth:`Shard.healthy` is true only while a canary sent to this master
      came back through this shard's own subscription recently.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from broker.backends.base import BackendUnavailable, DeliverBatch
from broker.backends.redis.canary import Canary
from broker.backends.redis.client import IO_ERRORS, ClientFactory
from broker.backends.redis.cluster_topology import Master
from broker.backends.redis.publisher import Publisher, Reroute
from broker.backends.redis.subscriber import Subscriber

__all__ = ["Shard", "ShardSettings"]

CLOSE_FLUSH_TIMEOUT = 2.0


class ShardSettings:
    """What every shard of one node shares."""

    def __init__(
        self,
        namespace: str,
        deliver: DeliverBatch,
        resubscribed: Callable[[], None],
        disturbed: Callable[[], None],
        reroute: Reroute,
        *,
        canary_interval: float,
        canary_timeout: float,
        subscribe_timeout: float,
        wait_replicas: int,
        wait_timeout_ms: int,
    ) -> None:
        self.namespace = namespace
        self.deliver = deliver
        self.resubscribed = resubscribed
        self.disturbed = disturbed
        self.reroute = reroute
        self.canary_interval = canary_interval
        self.canary_timeout = canary_timeout
        self.subscribe_timeout = subscribe_timeout
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms


class Shard:
    """One master's connections, reader and canary.

    Args:
        master: the master.
        connect: makes plain clients of it.
        canary_node: the name whose node channel hashes to one of its slots.
        settings: what every shard shares.
    """

    def __init__(
        self, master: Master, connect: ClientFactory, canary_node: bytes, settings: ShardSettings
    ) -> None:
        self.master = master
        self.canary_node = canary_node
        self.publisher = publisher = Publisher(
            connect(), settings.reroute, settings.wait_replicas, settings.wait_timeout_ms
        )
        self.subscriber = subscriber = Subscriber(
            connect,
            canary_node,
            settings.namespace,
            settings.deliver,
            lambda data: canary.back(data),
            lambda: canary.restart(),
            settings.subscribe_timeout,
            settings.resubscribed,
            settings.disturbed,
            cluster=True,
        )
        self.canary = canary = Canary(
            publisher,
            subscriber.node_channel,
            settings.canary_interval,
            settings.canary_timeout,
        )
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        """``host:port`` of the master."""
        return self.master.address

    async def start(self) -> None:
        """Connect and subscribe now (at the node's start).

        Raises:
            RedisError, OSError, TimeoutError: the master refused or is unreachable.
        """
        await self.publisher.client.ping()
        await self.subscriber.start()
        self._run()

    def begin(self) -> None:
        """Connect in the background (a master that appeared while running);
        the node hears ``resubscribed`` once the subscription is whole."""
        self.subscriber.begin()
        self._run()

    def _run(self) -> None:
        self._spawn(self.publisher.run(), f"redis-publisher-{self.address}")
        self._spawn(self.canary.run(self.subscriber), f"redis-canary-{self.address}")

    async def wait_heard(self) -> None:
        """Wait until a canary came back through this shard's subscription."""
        await self.canary.wait_heard()

    def healthy(self) -> bool:
        """Subscribed, the last publish worked, and a canary came back recently."""
        return self.subscriber.up and self.publisher.up and self.canary.fresh()

    async def close(self, error: Exception | None = None) -> None:
        """Let queued commands go out (briefly), then stop everything; what
        is still queued fails with ``error``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.publisher.idle(), CLOSE_FLUSH_TIMEOUT)
        for task in tuple(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=CLOSE_FLUSH_TIMEOUT)
        await self.subscriber.close()
        self.publisher.fail_all(error or BackendUnavailable("shard closed"))
        with contextlib.suppress(*IO_ERRORS):
            await self.publisher.client.aclose()

    def stats(self) -> dict[str, Any]:
        """This shard's state and counters (health JSON and metrics)."""
        return {
            "shard": self.address,
            "up": self.healthy(),
            "rooms": len(self.subscriber.rooms),
            "published": self.publisher.sent,
            "publish_failures": self.publisher.failures,
            "received": self.subscriber.received,
            "reconnects": self.subscriber.reconnects,
            "canary_misses": self.canary.misses,
            "canary_lag_seconds": self.canary.lag,
        }

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
