"""The network face of a node: WebSocket at ``/ws``, ``GET /healthz``, and a
graceful shutdown on SIGTERM/SIGINT that closes every client with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from broker.backends.base import Backend
from broker.backends.memory import MemoryBackend
from broker.config import Config
from broker.connection import ConnectionLimits, serve_connection
from broker.node import Node, new_node_id
from broker.outbox import SlowConsumerPolicy

__all__ = ["build_backend", "run", "running_node"]

log = logging.getLogger("broker.server")

WS_PATH = "/ws"


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


class _Routes:
    """``process_request`` hook: plain HTTP endpoints, and 404 for unknown paths."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def __call__(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == WS_PATH:
            return None
        if path == "/healthz":
            healthy = self.node.healthy()
            body = msgspec.json.encode(
                {
                    "status": "ok" if healthy else "unavailable",
                    "node": self.node.id,
                    "draining": self.node.draining,
                    "backend": self.node.backend.healthy(),
                }
            )
            return _http_response(200 if healthy else 503, body, "application/json")
        return _http_response(404, b"not found\n", "text/plain; charset=utf-8")


@contextlib.asynccontextmanager
async def running_node(config: Config) -> AsyncIterator[tuple[Node, Server]]:
    """Start a node and its server; on exit, close every client with 1001.

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
    )

    async def handler(ws: ServerConnection) -> None:
        await serve_connection(node, ws, limits)

    try:
        server = await serve(
            handler,
            config.host,
            config.port,
            process_request=_Routes(node),
            compression="deflate" if config.compression else None,
            max_size=config.max_message_size,
            max_queue=16,
            ping_interval=config.ping_interval or None,
            ping_timeout=config.ping_timeout or None,
            close_timeout=config.close_timeout,
            open_timeout=10,
            server_header=None,
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


async def run(config: Config) -> int:
    """Serve until SIGTERM or SIGINT; returns the process exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
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
        log.info("node %s shutting down: closing clients with 1001", node.id)
    log.info("node %s stopped", node.id)
    return 0
