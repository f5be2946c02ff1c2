"""broker.node's presence (docs/HISTORY-PRESENCE.md, "Presence"): read after
acknowledgement (a join's ``ok`` only once presence lists the session; a
leave out of presence before its ``left``), and the node's presence read."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from broker.backends import MemoryBackend, MemoryBus
from broker.backends.base import Membership, Position
from broker.node import Node
from protocol import MAX_PRESENCE_MEMBERS
from tests.support.fakes import HeldBackend, RecordingOutbox


class OrderedBackend(HeldBackend):
    """A :class:`HeldBackend` that logs tracks and publishes in one list, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []

    def track(self, membership: Membership, member: bool) -> None:
        self.order.append(f"track {membership.session} {'in' if member else 'out'}")
        super().track(membership, member)

    def publish(
        self,
        room: str,
        exclude: str,
        payload: bytes,
        published_at: float = 0.0,
        *,
        history: bool = True,
    ) -> asyncio.Future[Position | None]:
        self.order.append(f"publish {json.loads(payload)['type']}")
        return super().publish(room, exclude, payload, published_at, history=history)


@pytest.fixture
def bus() -> MemoryBus:
    return MemoryBus()


@pytest.fixture
async def nodes(bus: MemoryBus) -> AsyncIterator[tuple[Node, Node]]:
    """Two nodes on one memory bus."""
    pair = (Node("n-a", MemoryBackend(bus)), Node("n-b", MemoryBackend(bus)))
    for node in pair:
        await node.start()
    yield pair
    for node in pair:
        await node.close()


async def sessions_in(node: Node, room: str) -> list[str]:
    return [session for session, _ in (await node.presence(room)).members]


async def test_a_joined_session_is_in_presence_on_every_node_when_join_returns(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    await a.join("lobby", "s-1", RecordingOutbox(), "alice")
    assert await sessions_in(a, "lobby") == ["s-1"]
    assert await sessions_in(b, "lobby") == ["s-1"]


async def test_the_join_ok_is_sent_once_presence_lists_the_session(
    nodes: tuple[Node, Node], bus: MemoryBus
) -> None:
    a, _ = nodes
    seen_at_ok: list[int] = []

    def answer(_position: Position | None, _recovered: bool | None) -> None:
        seen_at_ok.append(bus.presence.read("lobby", 10).count)

    await a.join("lobby", "s-1", RecordingOutbox(), answer=answer)
    assert seen_at_ok == [1]


async def test_a_left_session_is_out_of_presence_on_every_node_when_leave_returns(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    await a.join("lobby", "s-1", RecordingOutbox(), "alice")
    await b.join("lobby", "s-2", RecordingOutbox())
    await a.leave("lobby", "s-1", "alice")
    assert await sessions_in(a, "lobby") == ["s-2"]
    assert await sessions_in(b, "lobby") == ["s-2"]


async def test_join_records_presence_before_it_announces_joined() -> None:
    backend = OrderedBackend()
    node = Node("n-test", backend)
    await node.start()
    await node.join("lobby", "s-1", RecordingOutbox())
    assert backend.order == ["track s-1 in", "publish joined"]
    await node.close()


async def test_leave_removes_presence_before_it_announces_left() -> None:
    backend = OrderedBackend()
    node = Node("n-test", backend)
    await node.start()
    await node.join("lobby", "s-1", RecordingOutbox())
    await node.leave("lobby", "s-1")
    assert backend.order[2:] == ["track s-1 out", "publish left"]
    await node.close()


async def test_node_presence_lists_at_most_the_protocol_cap(
    nodes: tuple[Node, Node], bus: MemoryBus
) -> None:
    a, _ = nodes
    for i in range(MAX_PRESENCE_MEMBERS + 1):
        bus.presence.track(Membership("lobby", f"s-{i}", None), member=True)

    read = await a.presence("lobby")

    assert (read.count, len(read.members), read.truncated) == (
        MAX_PRESENCE_MEMBERS + 1,
        MAX_PRESENCE_MEMBERS,
        True,
    )
