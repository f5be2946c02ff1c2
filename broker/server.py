"""The network face of a node: WebSocket at ``/ws``; ``GET /healthz``,
``/livez`` and ``/metrics``; ``POST /publish``; and a graceful drain on
SIGTERM/SIGINT.

The endpoints themselves are :mod:`broker.routes`; the connection's stages
are :mod:`broker.edge` (the request head), :mod:`broker.http` (plain HTTP on
h11), :mod:`broker.handshake` and :mod:`broker.wire` (the WebSocket).

Drain: the node stops accepting, turns ``/healthz`` to 503, and closes its
clients with 1001 spread evenly over ``drain_seconds`` (so a cluster does not
see all of them reconnect in the same instant); each closed session's
``left`` reaches the other nodes; then the process exits 0. A second signal
exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator

from broker.api_key import ApiKey
from broker.backends.base import Backend
from broker.backends.memory import MemoryBackend, MemoryBus
from broker.backends.memory_history import MemoryHistory
from broker.config import Config, join_budget, redis_seeds, split_list
from broker.connection import ConnectionLimits
from broker.link import WireSettings
from broker.listener import Listener
from broker.node import Node, new_node_id
from broker.outbox import SlowConsumerPolicy
from broker.publish_api import PublishApi
from broker.rooms_api import RoomsApi
from broker.routes import WS_PATH, NodeRoutes
from broker.tokens import HandshakeGuard, load_authenticator
from protocol import CloseCode

__all__ = ["CannotListen", "build_backend", "drain", "run", "running_node"]

log = logging.getLogger("broker.server")


def build_backend(config: Config, node_id: str) -> Backend:
    """The backend ``config`` asks for: Redis Cluster if seeds are given,
    Redis if a URL is, else memory."""
    if config.redis_cluster is not None:
        # Imported here so that a memory-only node never imports redis.
        from broker.backends.redis import ClusterSeeds, RedisClusterBackend

        return RedisClusterBackend(
            ClusterSeeds(redis_seeds(config.redis_cluster)),
            node_id,
            config.namespace,
            presence_ttl=config.node_timeout,
            history_size=config.history_size,
            history_ttl=config.history_ttl,
            history_meta_ttl=config.history_meta_ttl,
            wait_replicas=config.redis_cluster_wait_replicas,
        )
    if config.redis_url is None:
        history = MemoryHistory(config.history_size, config.history_ttl, config.history_meta_ttl)
        return MemoryBackend(MemoryBus(history))
    from broker.backends.redis import RedisBackend, redis_client_factory

    return RedisBackend(
        redis_client_factory(config.redis_url),
        node_id,
        config.namespace,
        presence_ttl=config.node_timeout,
        history_size=config.history_size,
        history_ttl=config.history_ttl,
        history_meta_ttl=config.history_meta_ttl,
    )


class CannotListen(Exception):
    """The node could not bind its address (port in use, unknown host, no permission)."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        # asyncio wraps bind's error in a longer text; the errno says it all.
        errno = None if isinstance(error, socket.gaierror) else error.errno
        reason = os.strerror(errno) if errno else error.strerror or str(error)
        super().__init__(f"cannot listen on {host}:{port}: {reason[:1].lower()}{reason[1:]}")


@contextlib.asynccontextmanager
async def running_node(config: Config) -> AsyncIterator[tuple[Node, Listener]]:
    """Start a node and its listener; on exit, close what is left with 1001.

    Yields:
        The node and its listener (``listener.sockets`` tells the port).
    """
    authenticator = load_authenticator(
        config.jwt_secret,
        config.jwt_public_key,
        split_list(config.jwt_algorithms),
        leeway=config.jwt_leeway,
        audience=config.jwt_audience,
        issuer=config.jwt_issuer,
    )
    if authenticator is None:
        log.warning("anonymous mode: no JWT key configured; any client may use any room")
    else:
        log.info("clients need tokens (%s)", ", ".join(authenticator.algorithms))
    node_id = config.node_id or new_node_id()
    node = Node(node_id, build_backend(config, node_id))
    await node.start()
    limits = ConnectionLimits(
        max_rooms=config.max_rooms_per_session,
        say_rate=config.say_rate,
        say_burst=config.say_burst,
        slow_consumer=SlowConsumerPolicy(
            config.slow_consumer_high_water,
            config.slow_consumer_grace,
            config.slow_consumer_hard_limit,
        ),
        idle_timeout=config.idle_timeout,
        verifier=authenticator,
        join_rate=config.join_rate,
        join_burst=join_budget(config),
    )
    # Empty counts as absent: any origin (the README says so).
    guard = HandshakeGuard(authenticator, split_list(config.allowed_origins) or None)
    api, rooms = None, None
    if config.api_key is not None:
        key = ApiKey(config.api_key)
        api, rooms = PublishApi(node, key), RoomsApi(node, key, config.history_size)
    routes = NodeRoutes(node, limits, config.max_connections, guard, api, rooms)
    settings = WireSettings(
        max_size=config.max_message_size,
        handshake_timeout=config.handshake_timeout,
        close_timeout=config.close_timeout,
        compression=config.compression,
        slow_consumer=limits.slow_consumer,
        ws_path=WS_PATH,
    )
    listener = Listener(routes, settings, config.ping_interval, config.ping_timeout)
    try:
        await listener.start(config.host, config.port, reuse_port=config.reuse_port)
    except OSError as exc:
        await node.close()
        raise CannotListen(config.host, config.port, exc) from exc
    except BaseException:
        await node.close()
        raise
    try:
        yield node, listener
    finally:
        node.draining = True
        node.flush()
        await listener.drain(0.0, CloseCode.GOING_AWAY, "going away")
        await listener.close()
        await node.close()


async def drain(node: Node, listener: Listener, seconds: float) -> None:
    """Stop accepting and close every client with 1001, spread over ``seconds``."""
    node.draining = True
    listener.stop_accepting()
    log.info("draining %d connections over %.1fs", len(listener.open_wires()), seconds)
    node.flush()
    await listener.drain(seconds, CloseCode.GOING_AWAY, "draining")


def _tune_gc() -> None:
    # A node holds many long-lived objects (one set per connection) and its
    # hot path allocates few containers: full collections would scan every
    # connection for nothing, and stall the loop (latency) while at it. The
    # objects of startup (modules, config) are moved out of the collector's
    # sight, and collections run ten times less often.
    gc.collect()
    gc.freeze()
    threshold, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(threshold * 10, gen1, gen2)


async def run(config: Config) -> int:
    """Serve until SIGTERM or SIGINT, then drain; returns the process exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting at once", signal.Signals(signum).name)
            os._exit(1)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    _tune_gc()
    async with running_node(config) as (node, listener):
        ports = sorted({sock.getsockname()[1] for sock in listener.sockets})
        log.info(
            "node %s listening on %s port %s (ws path %s, backend %s)",
            node.id,
            config.host,
            ",".join(map(str, ports)),
            WS_PATH,
            node.backend.stats()["backend"],
        )
        await stop.wait()
        log.info("node %s draining: closing clients with 1001", node.id)
        await drain(node, listener, config.drain_seconds)
    log.info("node %s stopped", node.id)
    return 0
