"""The node's endpoints: who may open a WebSocket at ``/ws``, and the plain
HTTP side (``GET``/``HEAD`` ``/healthz``, ``/livez``, ``/metrics``;
``POST /publish``; ``GET /rooms/{room}/history`` and ``/presence``).

Security (docs/PROTOCOL-ADDITIONS.md, "Authentication"): the handshake passes
the origin allowlist and, unless the node is anonymous, the token check; the
verified identity goes into the opener, so it lives exactly as long as the
connection's session and needs no registry to clean up.

To add an HTTP endpoint: one entry in :meth:`NodeRoutes.route`'s table of
read endpoints, or a branch returning a body reader for one that takes a body.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Final

from websockets.datastructures import Headers

from broker.connection import ClientConnection, ConnectionLimits
from broker.grants import Identity
from broker.handshake import Opener
from broker.http import BodyReader, RequestHead
from broker.http_answer import HttpAnswer, error_answer, json_answer
from broker.metrics import render_metrics
from broker.node import Node
from broker.publish_api import PUBLISH_PATH, PublishApi
from broker.rooms_api import ROOMS_PREFIX, RoomsApi, room_endpoint
from broker.tokens import HandshakeGuard, Refusal
from broker.wire import Wire, WireHandler
from protocol import ErrorCode, HttpErrorCode

__all__ = ["PROMETHEUS_TEXT", "WS_PATH", "NodeRoutes"]

log = logging.getLogger("broker.routes")

WS_PATH: Final = "/ws"
PROMETHEUS_TEXT: Final = "text/plain; version=0.0.4; charset=utf-8"
READ_METHODS: Final = ("GET", "HEAD")

API_DISABLED: Final = error_answer(
    404,
    HttpErrorCode.NOT_FOUND,
    "the server API is disabled on this node: start it with --api-key "
    "(or BROKER_API_KEY) to enable POST /publish, GET /rooms/{room}/history "
    "and GET /rooms/{room}/presence",
)
DRAINING: Final = error_answer(
    503, HttpErrorCode.DRAINING, "the node is shutting down: connect to another one"
)
AT_CAPACITY: Final = error_answer(
    503, HttpErrorCode.AT_CAPACITY, "the node is at its connection limit"
)
# RFC 9110, section 15.5.22: a 426 names the protocol to upgrade to.
NOT_UPGRADED: Final = error_answer(
    426,
    HttpErrorCode.BAD_REQUEST,
    "this endpoint takes a WebSocket handshake (Upgrade: websocket)",
    headers=(("Upgrade", "websocket"),),
)


def _refusal(refusal: Refusal) -> HttpAnswer:
    # docs/PROTOCOL-ADDITIONS.md: handshake refusals also carry `reason`.
    if refusal.status == 401:
        # RFC 6750, section 3: say which scheme is expected.
        challenge = ("WWW-Authenticate", 'Bearer realm="roomcast", error="invalid_token"')
        return error_answer(
            401, ErrorCode.UNAUTHORIZED, refusal.reason, headers=(challenge,), with_reason=True
        )
    return error_answer(403, ErrorCode.FORBIDDEN, refusal.reason, with_reason=True)


def _not_allowed(allow: str) -> HttpAnswer:
    return error_answer(
        405, HttpErrorCode.METHOD_NOT_ALLOWED, f"allowed: {allow}", headers=(("Allow", allow),)
    )


class NodeRoutes:
    """What every connection of a node is offered (an :class:`~broker.edge.EdgeApp`).

    Args:
        node: the node.
        limits: the per-connection limits of its sessions.
        max_connections: sessions the node takes at most (0: no limit).
        guard: who may open a WebSocket.
        publish_api: ``POST /publish`` (``None``: disabled).
        rooms_api: ``GET /rooms/{room}/...`` (``None``: disabled).
    """

    def __init__(
        self,
        node: Node,
        limits: ConnectionLimits,
        max_connections: int,
        guard: HandshakeGuard | None = None,
        publish_api: PublishApi | None = None,
        rooms_api: RoomsApi | None = None,
    ) -> None:
        self.node = node
        self.limits = limits
        self.max_connections = max_connections
        self.guard = guard or HandshakeGuard(None, None)
        self.publish_api = publish_api
        self.rooms_api = rooms_api
        self._reads: dict[str, Callable[[], HttpAnswer]] = {
            "/healthz": self._healthz,
            "/livez": self._livez,
            "/metrics": self._metrics,
        }

    # --- the WebSocket ---------------------------------------------------------

    def admit(self, target: str, headers: Headers) -> HttpAnswer | Opener:
        """Refuse a handshake, or return what opens its session."""
        node, counters = self.node, self.node.counters
        if node.draining:
            counters.connections_refused += 1
            return DRAINING
        if self.max_connections and counters.sessions >= self.max_connections:
            counters.connections_refused += 1
            return AT_CAPACITY
        verdict = self.guard.check(target, headers)
        if isinstance(verdict, Refusal):
            counters.errors["unauthorized" if verdict.status == 401 else "forbidden"] += 1
            log.info("handshake refused (%d %s)", verdict.status, verdict.reason)
            return _refusal(verdict)
        return partial(self._open, verdict)

    def _open(self, identity: Identity | None, wire: Wire) -> WireHandler:
        connection = ClientConnection(self.node, wire, self.limits, identity)
        connection.open()
        return connection

    # --- plain HTTP ----------------------------------------------------------

    def route(self, request: RequestHead) -> HttpAnswer | BodyReader:
        """Answer a plain HTTP request, or return the reader of its body."""
        path, method = request.path, request.method
        read = self._reads.get(path)
        if read is not None:
            # HEAD answers as GET does, without the body (load balancers probe so).
            return read() if method in READ_METHODS else _not_allowed("GET, HEAD")
        if path == PUBLISH_PATH:
            api = self.publish_api
            if api is None:
                return API_DISABLED
            if method != "POST":
                return _not_allowed("POST")
            return partial(api.handle, request)
        found = room_endpoint(path) if path.startswith(ROOMS_PREFIX) else None
        if found is not None:
            rooms = self.rooms_api
            if rooms is None:
                return API_DISABLED
            if method != "GET":
                return _not_allowed("GET")
            endpoint, target, headers = found[1], request.target, request
            return lambda _body: rooms.answer(endpoint, target, headers)
        if path == WS_PATH:
            return NOT_UPGRADED
        return error_answer(404, HttpErrorCode.NOT_FOUND, f"no endpoint at {path[:100]}")

    def _healthz(self) -> HttpAnswer:
        node = self.node
        healthy = node.healthy()
        body: dict[str, object] = {
            "status": "ok" if healthy else "unavailable",
            "node": node.id,
            "draining": node.draining,
            "backend": node.backend.healthy(),
            "connections": node.counters.sessions,
        }
        shards = node.backend.stats().get("shards")
        if shards is not None:
            # On a Redis Cluster: ready while any shard is; each one's state.
            body["shards"] = [
                {"shard": s["shard"], "up": s["up"], "rooms": s["rooms"]} for s in shards
            ]
        return json_answer(200 if healthy else 503, body)

    def _livez(self) -> HttpAnswer:
        # Answering at all shows the loop runs; the lag shows how well.
        return json_answer(
            200, {"status": "alive", "loop_lag_seconds": self.node.counters.loop_lag}
        )

    def _metrics(self) -> HttpAnswer:
        return HttpAnswer(200, render_metrics(self.node), PROMETHEUS_TEXT)
