"""broker.node: the delivery rule (this node's members get a payload only once
the backend accepted it) and when a join is announced, with a backend whose
publishes the test accepts or refuses by hand."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from broker.backends import BackendUnavailable, MemoryBackend
from broker.backends.base import DeliverBatch, Membership, PresenceHooks
from broker.node import Node
from tests.unit.test_hub import RecordingOutbox


class HeldBackend:
    """A backend that accepts every publish at once, or, while ``hold`` is
    set, keeps it pending until the test settles it."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str, bytes, asyncio.Future[None]]] = []
        self.rooms: set[str] = set()
        self.hold = False

    async def start(self, deliver: DeliverBatch, presence: PresenceHooks | None = None) -> None:
        pass

    def track(self, membership: Membership, member: bool) -> None:
        pass

    async def close(self) -> None:
        pass

    async def subscribe(self, room: str) -> None:
        self.rooms.add(room)

    def unsubscribe(self, room: str) -> None:
        self.rooms.discard(room)

    def publish(
        self, room: str, exclude: str, payload: bytes, published_at: float = 0.0
    ) -> asyncio.Future[None]:
        accepted = asyncio.get_running_loop().create_future()
        if not self.hold:
            accepted.set_result(None)
        self.published.append((room, exclude, payload, accepted))
        return accepted

    def healthy(self) -> bool:
        return True

    def stats(self) -> dict[str, Any]:
        return {"backend": "held"}

    def types(self) -> list[str]:
        return [json.loads(payload)["type"] for _, _, payload, _ in self.published]

    def accept_all(self) -> None:
        for *_, accepted in self.published:
            if not accepted.done():
                accepted.set_result(None)


async def next_turn() -> None:
    """Return once every callback already scheduled with ``call_soon`` has run."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.call_soon(done.set_result, None)
    await done


@pytest.fixture
async def held() -> HeldBackend:
    return HeldBackend()


@pytest.fixture
async def node(held: HeldBackend) -> AsyncIterator[Node]:
    node = Node("n-test", held)
    await node.start()
    yield node
    held.accept_all()
    await node.close()


async def join_accepted(node: Node, room: str, session: str) -> RecordingOutbox:
    outbox = RecordingOutbox()
    await node.join(room, session, outbox)
    return outbox


async def test_join_subscribes_the_node_and_announces_joined(node: Node, held: HeldBackend) -> None:
    await join_accepted(node, "lobby", "s-1")
    assert held.rooms == {"lobby"}
    assert held.types() == ["joined"]


async def test_join_of_a_member_again_announces_nothing(node: Node, held: HeldBackend) -> None:
    outbox = await join_accepted(node, "lobby", "s-1")
    await node.join("lobby", "s-1", outbox)
    assert held.types() == ["joined"]


async def test_leave_announces_left_and_unsubscribes_the_last_member(
    node: Node, held: HeldBackend
) -> None:
    await join_accepted(node, "lobby", "s-1")
    node.leave("lobby", "s-1")
    assert held.types() == ["joined", "left"]
    assert held.rooms == set()


async def test_local_members_get_a_publish_only_once_accepted(
    node: Node, held: HeldBackend
) -> None:
    listener = await join_accepted(node, "lobby", "s-1")
    before = len(listener.payloads)
    held.hold = True

    accepted = node.publish("lobby", "s-2", b'{"type":"message"}')
    await next_turn()  # in which an eager node would deliver
    assert len(listener.payloads) == before

    held.published[-1][3].set_result(None)
    await next_turn()  # the acceptance's callbacks run
    assert accepted.done()
    assert listener.payloads[before:] == [b'{"type":"message"}']


async def test_a_refused_publish_reaches_no_local_member(node: Node, held: HeldBackend) -> None:
    listener = await join_accepted(node, "lobby", "s-1")
    before = len(listener.payloads)
    held.hold = True

    accepted = node.publish("lobby", "s-2", b'{"type":"message"}')
    held.published[-1][3].set_exception(BackendUnavailable("down"))
    await next_turn()  # the refusal's callbacks run

    assert isinstance(accepted.exception(), BackendUnavailable)
    assert listener.payloads[before:] == []


async def test_join_returns_only_once_its_joined_was_accepted(
    node: Node, held: HeldBackend
) -> None:
    held.hold = True
    joining = asyncio.ensure_future(node.join("lobby", "s-1", RecordingOutbox()))
    # Far longer than a join takes with every publish accepted at once.
    done, _ = await asyncio.wait([joining], timeout=0.2)
    held.accept_all()
    await joining
    assert not done, "join returned while its joined announcement was still pending"


async def test_join_of_a_client_that_left_meanwhile_announces_nothing() -> None:
    backend = MemoryBackend()
    node = Node("n-1", backend)
    await node.start()
    try:
        outbox = _ClosedOutbox()
        await node.join("room", "s-gone", outbox)
        assert not node.hub.has_room("room")
        assert backend.published == 0
    finally:
        await node.close()


class _ClosedOutbox:
    closed = True

    def send(self, frame: bytes, payload: bytes) -> None:
        raise AssertionError("nothing may be sent to a closed outbox")

    def send_payload(self, payload: bytes) -> None:
        raise AssertionError("nothing may be sent to a closed outbox")

    def flush(self) -> None: ...

    def close(self) -> None: ...

    def drained(self) -> None: ...
