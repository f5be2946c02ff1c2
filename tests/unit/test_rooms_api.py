"""broker.rooms_api through broker.routes: ``GET /rooms/{room}/presence``
(docs/HISTORY-PRESENCE.md, "Server API"), answered without a socket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from broker.api_key import ApiKey
from broker.backends import MemoryBackend
from broker.connection import ConnectionLimits
from broker.http import RequestHead
from broker.http_answer import HttpAnswer
from broker.node import Node
from broker.outbox import SlowConsumerPolicy
from broker.rooms_api import RoomsApi
from broker.routes import NodeRoutes
from tests.support.fakes import HeldBackend, RecordingOutbox

LIMITS = ConnectionLimits(max_rooms=0, say_rate=0, say_burst=0, slow_consumer=SlowConsumerPolicy())
KEY = "rooms-api-key-0123456789abcdef"
AUTHORIZED = [(b"host", b"x"), (b"authorization", f"Bearer {KEY}".encode())]


async def started(node: Node) -> Node:
    await node.start()
    return node


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    node = await started(Node("n-test", MemoryBackend()))
    yield node
    await node.close()


def routes_of(node: Node, *, api: bool = True) -> NodeRoutes:
    rooms = RoomsApi(node, ApiKey(KEY), history_size=0) if api else None
    return NodeRoutes(node, LIMITS, max_connections=0, rooms_api=rooms)


async def get(
    routes: NodeRoutes,
    target: str,
    headers: list[tuple[bytes, bytes]] = AUTHORIZED,
    method: str = "GET",
) -> HttpAnswer:
    verdict = routes.route(RequestHead(method, target, headers))
    if isinstance(verdict, HttpAnswer):
        return verdict
    return await verdict(b"")


async def test_presence_is_the_reply_without_type_and_ref(node: Node) -> None:
    await node.join("lobby", "s-1", RecordingOutbox(), "alice")
    await node.join("lobby", "s-2", RecordingOutbox())

    answer = await get(routes_of(node), "/rooms/lobby/presence")

    assert (answer.status, answer.content_type) == (200, "application/json")
    assert json.loads(answer.body) == {
        "room": "lobby",
        "count": 2,
        "users": 1,
        "members": [{"session": "s-1", "user": "alice"}, {"session": "s-2"}],
    }


async def test_presence_of_an_empty_room_is_200_with_nobody(node: Node) -> None:
    answer = await get(routes_of(node), "/rooms/lobby/presence")
    assert json.loads(answer.body) == {"room": "lobby", "count": 0, "users": 0, "members": []}


async def test_presence_without_the_key_is_401(node: Node) -> None:
    answer = await get(routes_of(node), "/rooms/lobby/presence", [(b"host", b"x")])
    assert (answer.status, json.loads(answer.body)["error"]) == (401, "unauthorized")


async def test_presence_with_a_wrong_key_is_401(node: Node) -> None:
    wrong = [(b"host", b"x"), (b"authorization", b"Bearer nope")]
    answer = await get(routes_of(node), "/rooms/lobby/presence", wrong)
    assert answer.status == 401


async def test_presence_of_a_bad_room_is_400_bad_room(node: Node) -> None:
    answer = await get(routes_of(node), "/rooms/no%20spaces/presence")
    assert (answer.status, json.loads(answer.body)["error"]) == (400, "bad_room")


async def test_presence_on_a_node_without_the_api_is_404_saying_how_to_enable_it(
    node: Node,
) -> None:
    answer = await get(routes_of(node, api=False), "/rooms/lobby/presence")
    assert answer.status == 404
    assert "GET /rooms/{room}/presence" in json.loads(answer.body)["message"]


async def test_a_post_to_presence_is_405_allowing_get(node: Node) -> None:
    answer = await get(routes_of(node), "/rooms/lobby/presence", method="POST")
    assert (answer.status, ("Allow", "GET") in answer.header_list()) == (405, True)


async def test_presence_while_the_store_is_away_is_503_unavailable() -> None:
    backend = HeldBackend()
    backend.presence_down = True
    node = await started(Node("n-test", backend))
    answer = await get(routes_of(node), "/rooms/lobby/presence")
    await node.close()
    assert (answer.status, json.loads(answer.body)["error"]) == (503, "unavailable")


async def test_history_is_still_routed_beside_presence(node: Node) -> None:
    answer = await get(routes_of(node), "/rooms/lobby/history")
    assert json.loads(answer.body) == {"room": "lobby", "messages": []}
