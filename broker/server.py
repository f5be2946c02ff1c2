"""The network face of a node: WebSocket at ``/ws``; ``GET /healthz``,
``/livez`` and ``/metrics``; and a graceful drain on SIGTERM/SIGINT.

Drain: the node stops accepting, turns ``/healthz`` to 503, and closes its
clients with 1001 spread evenly over ``drain_seconds`` (so a cluster does not
see all of them reconnect in the same instant); each closed session's
``left`` reaches the other nodes; then the process exits 0. A second signal
exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.protocol import State

from broker.backends.base import Backend
from broker.backends.memory import MemoryBackend
from broker.close_codes import CloseCode
from broker.config import Config
from broker.connection import ConnectionLimits, serve_connection
from broker.metrics import render_metrics
from broker.node import Node, new_node_id
from broker.outbox import SlowConsumerPolicy

__all__ = ["build_backend", "drain", "run", "running_node"]

log = logging.getLogger("broker.server")

WS_PATH = "/ws"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def build_backend(config: Config, node_id: str) -> Backend:
    """The backend ``config`` asks for: Redis if a URL is given, else memory."""
    if config.redis_url is None:
        return MemoryBackend()
    # Imported here so that a memory-only node never imports redis.
    from broker.backends.redis import RedisBackend, redis_client_factory

    return RedisBackend(redis_client_factory(config.redis_url), node_id, config.namespace)


def _http_response(status: int, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ]
    )
    return Response(status, "OK" if status < 400 else "Error", headers, body)


def _json_response(status: int, body: object) -> Response:
    return _http_response(status, msgspec.json.encode(body), "application/json")


class _Routes:
    """``process_request`` hook: plain HTTP endpoints, the connection limit,
    and 404 for unknown paths."""

    def __init__(self, node: Node, max_connections: int) -> None:
        self.node = node
        self.max_connections = max_connections

    def __call__(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        node = self.node
        if path == WS_PATH:
            if node.draining:
                node.connections_refused += 1
                return _json_response(503, {"error": "draining"})
            if self.max_connections and node.sessions >= self.max_connections:
                node.connections_refused += 1
                return _json_response(503, {"error": "node is at its connection limit"})
            return None
        if path == "/healthz":
            healthy = node.healthy()
            body = {
                "status": "ok" if healthy else "unavailable",
                "node": node.id,
                "draining": node.draining,
                "backend": node.backend.healthy(),
                "connections": node.sessions,
            }
            return _json_response(200 if healthy else 503, body)
        if path == "/livez":
            # Answering at all shows the loop runs; the lag shows how well.
            return _json_response(200, {"status": "alive", "loop_lag_seconds": node.loop_lag})
        if path == "/metrics":
            return _http_response(200, render_metrics(node), PROMETHEUS_TEXT)
        return _http_response(404, b"not found\n", "text/plain; charset=utf-8")


@contextlib.asynccontextmanager
async def running_node(config: Config) -> AsyncIterator[tuple[Node, Server]]:
    """Start a node and its server; on exit, close what is left with 1001.

    Yields:
        The node and the listening server (``server.sockets`` tells the port).
    """
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
    )

    async def handler(ws: ServerConnection) -> None:
        await serve_connection(node, ws, limits)

    try:
        server = await serve(
            handler,
            config.host,
            config.port,
            process_request=_Routes(node, config.max_connections),
            compression="deflate" if config.compression else None,
            max_size=config.max_message_size,
            max_queue=16,
            ping_interval=config.ping_interval or None,
            ping_timeout=config.ping_timeout or None,
            close_timeout=config.close_timeout,
            open_timeout=config.handshake_timeout,
            server_header=None,
            reuse_port=config.reuse_port,
        )
    except BaseException:
        await node.close()
        raise
    try:
        yield node, server
    finally:
        node.draining = True
        node.flush()
        server.close(close_connections=True)
        await server.wait_closed()
        await node.close()


async def drain(node: Node, server: Server, seconds: float) -> None:
    """Stop accepting and close every client with 1001, spread over ``seconds``."""
    node.draining = True
    server.close(close_connections=False)
    connections = [c for c in server.connections if c.protocol.state is State.OPEN]
    log.info("draining %d connections over %.1fs", len(connections), seconds)
    node.flush()
    closing: list[asyncio.Task[None]] = []
    pause = seconds / len(connections) if connections and seconds > 0 else 0.0
    for index, connection in enumerate(connections):
        if index and pause:
            await asyncio.sleep(pause)
        closing.append(asyncio.create_task(connection.close(CloseCode.GOING_AWAY, "draining")))
    if closing:
        await asyncio.wait(closing)
    await server.wait_closed()


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
    async with running_node(config) as (node, server):
        ports = sorted({sock.getsockname()[1] for sock in server.sockets})
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
        await drain(node, server, config.drain_seconds)
    log.info("node %s stopped", node.id)
    return 0
