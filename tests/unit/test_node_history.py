"""broker.node with history (docs/HISTORY-PRESENCE.md): positions on the
join's ok, recovery with ``since`` (replay, then ok, then live, no gap and no
duplicate), and a node filling a gap in a room's offsets from history."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import msgspec
import pytest

from broker.backends.base import HistoryRead, Position
from broker.backends.memory import MemoryBackend, MemoryBus
from broker.backends.memory_history import MemoryHistory
from broker.node import Node
from protocol import Message, encode
from protocol import Position as Since
from tests.support.fakes import RecordingOutbox, next_turn

ROOM = "lobby"


def say(body: int, sender: str = "s-talker") -> bytes:
    return encode(Message(room=ROOM, from_=sender, body=msgspec.Raw(json.dumps(body).encode())))


class Answers:
    """Records the (position, recovered) a join answers with, and what the
    joiner had been sent by then."""

    def __init__(self, outbox: RecordingOutbox) -> None:
        self.outbox = outbox
        self.calls: list[tuple[Position | None, bool | None, int]] = []

    def __call__(self, position: Position | None, recovered: bool | None) -> None:
        self.calls.append((position, recovered, len(self.outbox.payloads)))


@pytest.fixture
def bus() -> MemoryBus:
    return MemoryBus(MemoryHistory(size=50, ttl=600.0, meta_ttl=3600.0))


@pytest.fixture
async def node(bus: MemoryBus) -> AsyncIterator[Node]:
    node = Node("n-test", MemoryBackend(bus))
    await node.start()
    yield node
    await node.close()


async def join(
    node: Node, session: str, since: Since | None = None
) -> tuple[RecordingOutbox, Answers]:
    outbox = RecordingOutbox()
    answers = Answers(outbox)
    assert await node.join(ROOM, session, outbox, since=since, answer=answers)
    return outbox, answers


async def said(node: Node, body: int) -> None:
    """Publish, and return once the message came back to this node."""
    await node.publish(ROOM, "s-talker", say(body))
    await next_turn()


def bodies(outbox: RecordingOutbox) -> list[object]:
    return [m["body"] for m in outbox.messages() if m["type"] == "message"]


def offsets(outbox: RecordingOutbox) -> list[int]:
    return [m["offset"] for m in outbox.messages() if m["type"] == "message"]


async def test_the_join_ok_carries_the_room_position(node: Node) -> None:
    _, first = await join(node, "s-1")
    position = first.calls[0][0]
    assert position is not None and position.offset == 0

    await node.publish(ROOM, "s-1", say(1, "s-1"))
    await next_turn()
    _, second = await join(node, "s-2")
    assert second.calls[0][:2] == (Position(1, position.epoch), None)


async def test_a_publish_resolves_to_its_position(node: Node) -> None:
    await join(node, "s-1")
    first = await node.publish(ROOM, "s-1", say(1, "s-1"))
    second = await node.publish(ROOM, "s-1", say(2, "s-1"))
    assert first is not None and second is not None
    assert (first.offset, second.offset) == (1, 2)
    assert first.epoch == second.epoch


async def test_members_get_messages_with_their_positions_but_not_the_sender(node: Node) -> None:
    listener, _ = await join(node, "s-1")
    talker, _ = await join(node, "s-talker")

    await node.publish(ROOM, "s-talker", say(1))
    await next_turn()

    assert offsets(listener) == [1]
    assert bodies(talker) == []


async def test_recovery_replays_what_was_missed_before_the_ok(node: Node) -> None:
    await join(node, "s-talker")
    for body in range(5):
        await said(node, body)
    position = node.position(ROOM)
    assert position is not None

    outbox, answers = await join(node, "s-back", Since(offset=2, epoch=position.epoch))

    assert offsets(outbox) == [3, 4, 5]
    assert answers.calls == [(Position(5, position.epoch), True, 3)]


async def test_recovery_at_the_current_position_replays_nothing(node: Node) -> None:
    await join(node, "s-talker")
    await said(node, 1)
    position = node.position(ROOM)
    assert position is not None

    outbox, answers = await join(node, "s-back", Since(offset=1, epoch=position.epoch))

    assert offsets(outbox) == []
    assert answers.calls[0][1] is True


async def test_recovery_from_another_epoch_is_refused(node: Node) -> None:
    await join(node, "s-talker")
    await said(node, 1)

    outbox, answers = await join(node, "s-back", Since(offset=1, epoch="e-gone"))

    assert offsets(outbox) == []
    assert answers.calls[0][1] is False


async def test_recovery_beyond_the_current_offset_is_refused(node: Node) -> None:
    await join(node, "s-talker")
    await said(node, 1)
    position = node.position(ROOM)
    assert position is not None

    _, answers = await join(node, "s-back", Since(offset=9, epoch=position.epoch))

    assert answers.calls[0][1] is False


async def test_recovery_is_refused_once_history_no_longer_holds_the_gap(bus: MemoryBus) -> None:
    small = MemoryBus(MemoryHistory(size=2, ttl=600.0, meta_ttl=3600.0))
    node = Node("n-small", MemoryBackend(small))
    await node.start()
    try:
        await join(node, "s-talker")
        for body in range(5):
            await said(node, body)
        position = node.position(ROOM)
        assert position is not None

        outbox, answers = await join(node, "s-back", Since(offset=1, epoch=position.epoch))

        assert offsets(outbox) == []
        assert answers.calls[0][1] is False
    finally:
        await node.close()


async def test_live_messages_during_the_join_wait_until_after_the_ok(node: Node) -> None:
    await join(node, "s-talker")
    outbox = RecordingOutbox()
    order: list[str] = []

    def answer(position: Position | None, recovered: bool | None) -> None:
        order.append("ok")
        # Published while the joiner is a member but not yet answered.
        order.extend(f"seen {b}" for b in bodies(outbox))

    joining = node.join(ROOM, "s-new", outbox, answer=answer)
    task = asyncio.ensure_future(joining)
    await next_turn()
    await node.publish(ROOM, "s-talker", say(7))
    await task

    assert order == ["ok"]
    assert bodies(outbox) == [7]


async def test_a_gap_in_offsets_is_filled_from_history_in_order(node: Node, bus: MemoryBus) -> None:
    listener, _ = await join(node, "s-1")
    # Two messages the node never received (as if its subscription had
    # been interrupted), then one it does receive.
    bus.history.append(ROOM, say(1))
    bus.history.append(ROOM, say(2))

    await node.publish(ROOM, "s-talker", say(3))
    for _ in range(5):
        await next_turn()

    assert offsets(listener) == [1, 2, 3]


async def test_a_resubscribed_node_reads_what_it_missed(node: Node, bus: MemoryBus) -> None:
    listener, _ = await join(node, "s-1")
    bus.history.append(ROOM, say(1))

    node._resubscribed()
    for _ in range(5):
        await next_turn()

    assert offsets(listener) == [1]


async def test_history_returns_the_kept_messages(node: Node) -> None:
    await join(node, "s-talker")
    for body in range(3):
        await said(node, body)

    read = await node.history(ROOM, limit=2)

    assert read is not None
    assert [offset for offset, _ in read.messages] == [2, 3]


async def test_a_node_without_history_has_no_positions() -> None:
    node = Node("n-plain", MemoryBackend())
    await node.start()
    try:
        _, answers = await join(node, "s-1")
        assert answers.calls[0][:2] == (None, None)
        assert await node.publish(ROOM, "s-1", say(1)) is None
        assert await node.history(ROOM) is None
    finally:
        await node.close()


async def test_joiners_recovering_from_one_position_share_one_history_read(
    bus: MemoryBus,
) -> None:
    class CountingBackend(MemoryBackend):
        reads = 0

        async def read_history(
            self, room: str, after: int = 0, before: int | None = None, limit: int | None = None
        ) -> HistoryRead:
            CountingBackend.reads += 1
            return await super().read_history(room, after, before, limit)

    node = Node("n-counting", CountingBackend(bus))
    await node.start()
    try:
        await join(node, "s-talker")
        for body in range(3):
            await said(node, body)
        position = node.position(ROOM)
        assert position is not None
        before = CountingBackend.reads

        joins = [join(node, f"s-{i}", Since(offset=1, epoch=position.epoch)) for i in range(20)]
        results = await asyncio.gather(*joins)

        assert all(offsets(outbox) == [2, 3] for outbox, _ in results)
        assert CountingBackend.reads - before == 1
    finally:
        await node.close()
