"""broker.routes: the node's endpoints, answered without a socket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from websockets.datastructures import Headers

from broker.backends.memory import MemoryBackend
from broker.connection import ConnectionLimits
from broker.http import RequestHead
from broker.http_answer import HttpAnswer
from broker.node import Node
from broker.outbox import SlowConsumerPolicy
from broker.routes import NodeRoutes

LIMITS = ConnectionLimits(max_rooms=0, say_rate=0, say_burst=0, slow_consumer=SlowConsumerPolicy())


@pytest.fixture
async def routes() -> AsyncIterator[NodeRoutes]:
    node = Node("n-test", MemoryBackend())
    await node.start()
    yield NodeRoutes(node, LIMITS, max_connections=2)
    await node.close()


def answer(routes: NodeRoutes, method: str, target: str) -> HttpAnswer:
    verdict = routes.route(RequestHead(method, target, [(b"host", b"x")]))
    assert isinstance(verdict, HttpAnswer)
    return verdict


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/metrics"])
async def test_head_answers_as_get_does(routes: NodeRoutes, path: str) -> None:
    get, head = answer(routes, "GET", path), answer(routes, "HEAD", path)
    assert head.status == get.status
    assert head.content_type == get.content_type


async def test_a_write_to_a_read_endpoint_is_405_with_allow(routes: NodeRoutes) -> None:
    verdict = answer(routes, "POST", "/healthz")
    assert verdict.status == 405
    assert ("Allow", "GET, HEAD") in verdict.header_list()


async def test_publish_on_a_node_without_an_api_key_is_404_saying_how_to_enable_it(
    routes: NodeRoutes,
) -> None:
    verdict = answer(routes, "POST", "/publish")
    message = json.loads(verdict.body)["message"]
    assert verdict.status == 404
    assert "--api-key" in message
    assert "BROKER_API_KEY" in message


async def test_a_plain_get_of_the_websocket_path_is_426(routes: NodeRoutes) -> None:
    verdict = answer(routes, "GET", "/ws")
    assert verdict.status == 426
    assert ("Upgrade", "websocket") in verdict.header_list()


async def test_an_unknown_path_is_404_with_the_error_shape(routes: NodeRoutes) -> None:
    verdict = answer(routes, "GET", "/nope")
    assert (verdict.status, set(json.loads(verdict.body))) == (404, {"error", "message"})


async def test_a_draining_node_refuses_handshakes_with_503(routes: NodeRoutes) -> None:
    routes.node.draining = True
    verdict = routes.admit("/ws", Headers())
    assert isinstance(verdict, HttpAnswer)
    assert (verdict.status, json.loads(verdict.body)["error"]) == (503, "draining")
    assert routes.node.counters.connections_refused == 1


async def test_a_full_node_refuses_handshakes_with_503(routes: NodeRoutes) -> None:
    routes.node.counters.sessions = 2
    verdict = routes.admit("/ws", Headers())
    assert isinstance(verdict, HttpAnswer)
    assert (verdict.status, json.loads(verdict.body)["error"]) == (503, "at_capacity")


async def test_an_admitted_handshake_gets_an_opener(routes: NodeRoutes) -> None:
    assert callable(routes.admit("/ws", Headers()))
