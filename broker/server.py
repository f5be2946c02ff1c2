"""The network face of a node: WebSocket at ``/ws``; ``GET /healthz``,
``/livez`` and ``/metrics``; ``POST /publish``; and a graceful drain on
SIGTERM/SIGINT.

Security (docs/PROTOCOL-ADDITIONS.md): the ``/ws`` handshake passes the
origin allowlist and, unless the node is anonymous, the token check; the
verified identity rides on the wire (``Wire.auth``) to the connection, so it
lives exactly as long as the connection and needs no registry to clean up.

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
from collections.abc import AsyncIterator, Awaitable
from urllib.parse import urlsplit

import msgspec
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from broker.auth import HandshakeGuard, Refusal, load_authenticator
from broker.backends.base import Backend
from broker.backends.memory import MemoryBackend
from broker.config import Config, split_list
from broker.connection import ClientConnection, ConnectionLimits
from broker.listener import Listener
from broker.metrics import render_metrics
from broker.node import Node, new_node_id
from broker.outbox import SlowConsumerPolicy
from broker.publish_api import PUBLISH_PATH, ApiReply, PublishApi
from broker.wire import HttpRequest, Wire, WireSettings, http_response
from protocol import CloseCode

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

    return RedisBackend(
        redis_client_factory(config.redis_url),
        node_id,
        config.namespace,
        presence_ttl=config.node_timeout,
    )


def _json_response(status: int, body: object) -> Response:
    return http_response(status, msgspec.json.encode(body), "application/json")


def _api_response(reply: ApiReply) -> Response:
    response = _json_response(reply.status, reply.body)
    for name, value in reply.headers:
        response.headers[name] = value
    return response


def _refusal_response(refusal: Refusal) -> Response:
    if refusal.status == 401:
        # RFC 6750, section 3: say which scheme is expected.
        headers = (("WWW-Authenticate", 'Bearer realm="roomcast", error="invalid_token"'),)
        return _api_response(
            ApiReply(401, {"error": "unauthorized", "reason": refusal.reason}, headers)
        )
    return _json_response(refusal.status, {"error": "forbidden", "reason": refusal.reason})


class _Routes:
    """The handshake hook: plain HTTP endpoints, the connection limit, origins
    and tokens, and 404 for unknown paths; ``None`` lets the WebSocket
    handshake go on."""

    def __init__(
        self, node: Node, max_connections: int, guard: HandshakeGuard | None = None
    ) -> None:
        self.node = node
        self.max_connections = max_connections
        self.guard = guard or HandshakeGuard(None, None)

    def __call__(self, connection: Wire, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        node = self.node
        if path == WS_PATH:
            if node.draining:
                node.connections_refused += 1
                return _json_response(503, {"error": "draining"})
            if self.max_connections and node.sessions >= self.max_connections:
                node.connections_refused += 1
                return _json_response(503, {"error": "node is at its connection limit"})
            verdict = self.guard.check(request.path, request.headers)
            if isinstance(verdict, Refusal):
                node.errors["unauthorized" if verdict.status == 401 else "forbidden"] += 1
                log.info("handshake refused (%d %s)", verdict.status, verdict.reason)
                return _refusal_response(verdict)
            connection.auth = verdict
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
            return http_response(200, render_metrics(node), PROMETHEUS_TEXT)
        return http_response(404, b"not found\n", "text/plain; charset=utf-8")


class _NodeApp:
    """What every connection of a node reports to (a :class:`~broker.wire.WireApp`)."""

    def __init__(
        self,
        node: Node,
        routes: _Routes,
        limits: ConnectionLimits,
        publish_api: PublishApi | None = None,
    ) -> None:
        self.node = node
        self.routes = routes
        self.limits = limits
        self.publish_api = publish_api

    def route(self, wire: Wire, request: Request) -> Response | None:
        return self.routes(wire, request)

    def route_body(self, wire: Wire, request: HttpRequest) -> Response | Awaitable[Response]:
        api = self.publish_api
        if api is None or urlsplit(request.path).path != PUBLISH_PATH:
            return http_response(404, b"not found\n", "text/plain; charset=utf-8")
        if request.method != "POST":
            response = _json_response(405, {"error": "method not allowed"})
            response.headers["Allow"] = "POST"
            return response
        return self._publish(api, request.headers, request.body)

    async def _publish(self, api: PublishApi, headers: Headers, body: bytes) -> Response:
        return _api_response(await api.handle(headers, body))

    def opened(self, wire: Wire) -> None:
        connection = ClientConnection(self.node, wire, self.limits, wire.auth)
        wire.session = connection
        connection.open()

    def text(self, wire: Wire, data: bytes) -> None:
        wire.session.receive(data)

    def closed(self, wire: Wire) -> None:
        wire.session.closed()


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
        authenticator=authenticator,
    )
    # Empty counts as absent: any origin (the README says so).
    guard = HandshakeGuard(authenticator, split_list(config.allowed_origins) or None)
    routes = _Routes(node, config.max_connections, guard)
    api = PublishApi(node, config.api_key) if config.api_key is not None else None
    app = _NodeApp(node, routes, limits, api)
    settings = WireSettings(
        max_size=config.max_message_size,
        handshake_timeout=config.handshake_timeout,
        close_timeout=config.close_timeout,
        compression=config.compression,
    )
    listener = Listener(app, settings, config.ping_interval, config.ping_timeout)
    try:
        await listener.start(config.host, config.port, reuse_port=config.reuse_port)
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
