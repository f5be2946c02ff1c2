"""The positions and history contract of every backend
(broker.backends.base.Backend; docs/HISTORY-PRESENCE.md, "Positions"): the
memory backend and Redis give the same answers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import pytest

from broker.backends import Backend, MemoryBackend, MemoryBus
from broker.backends.memory_history import MemoryHistory
from broker.backends.redis import RedisBackend, redis_client_factory
from protocol import Message, encode, with_position
from tests.backends.conftest import Peer

SIZE = 5
HistoryPeers = Callable[[int], Awaitable[list[Peer]]]


def message(body: int, sender: str = "s-1", room: str = "lobby") -> bytes:
    return encode(Message(room=room, from_=sender, body=msgspec.Raw(str(body).encode())))


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def history_peers(request: pytest.FixtureRequest) -> AsyncIterator[HistoryPeers]:
    """``await history_peers(n)``: n started backends of one cluster keeping
    ``SIZE`` messages per room."""
    make: Callable[[str], Backend]
    if request.param == "memory":
        bus = MemoryBus(MemoryHistory(SIZE, 600.0, 3600.0))
        make = lambda _node: MemoryBackend(bus)  # noqa: E731
    else:
        url = request.getfixturevalue("shared_redis").url
        namespace = "h" + uuid.uuid4().hex[:10]
        make = lambda node: RedisBackend(  # noqa: E731
            redis_client_factory(url),
            node=node,
            namespace=namespace,
            history_size=SIZE,
            history_ttl=600.0,
            history_meta_ttl=3600.0,
        )
    started: list[Peer] = []

    async def start(count: int) -> list[Peer]:
        group = []
        for i in range(count):
            peer = Peer(f"n-{len(started)}-{i}", make(f"n-{len(started)}-{i}"))
            await peer.backend.start(peer.deliver)
            started.append(peer)
            group.append(peer)
        return group

    yield start
    for peer in started:
        await peer.backend.close()


async def test_a_message_gets_the_next_offset_of_its_room(history_peers: HistoryPeers) -> None:
    (a,) = await history_peers(1)
    positions = [await a.backend.publish("lobby", "s-1", message(i)) for i in range(3)]
    other = await a.backend.publish("elsewhere", "s-1", message(0, room="elsewhere"))
    assert [p.offset for p in positions if p is not None] == [1, 2, 3]
    assert len({p.epoch for p in positions if p is not None}) == 1
    assert other is not None and other.offset == 1


async def test_every_node_receives_the_frame_with_its_position_written_in(
    history_peers: HistoryPeers,
) -> None:
    a, b = await history_peers(2)
    await a.backend.subscribe("lobby")
    await b.backend.subscribe("lobby")

    position = await a.backend.publish("lobby", "s-1", message(7))

    assert position is not None
    for peer in (a, b):
        (delivery,) = await peer.wait_for(1)
        assert (delivery.offset, delivery.epoch) == position
        assert delivery.payload == with_position(message(7), *position)


async def test_announcements_get_no_position(history_peers: HistoryPeers) -> None:
    a, b = await history_peers(2)
    await b.backend.subscribe("lobby")
    joined = b'{"type":"joined","room":"lobby","session":"s-1"}'

    assert await a.backend.publish("lobby", "s-1", joined, history=False) is None

    (delivery,) = await b.wait_for(1)
    assert (delivery.offset, delivery.payload) == (0, joined)


async def test_history_holds_exactly_the_last_size_messages(history_peers: HistoryPeers) -> None:
    (a,) = await history_peers(1)
    for i in range(SIZE + 3):
        await a.backend.publish("lobby", "s-1", message(i))

    read = await a.backend.read_history("lobby")

    assert read.offset == SIZE + 3
    assert [offset for offset, _ in read.messages] == list(range(4, SIZE + 4))
    assert read.messages[-1][1] == with_position(message(SIZE + 2), SIZE + 3, read.epoch)


async def test_history_reads_after_before_and_limit(history_peers: HistoryPeers) -> None:
    (a,) = await history_peers(1)
    for i in range(5):
        await a.backend.publish("lobby", "s-1", message(i))

    after = await a.backend.read_history("lobby", after=3)
    before = await a.backend.read_history("lobby", before=3)
    limited = await a.backend.read_history("lobby", limit=2)
    paged = await a.backend.read_history("lobby", before=5, limit=2)
    position_only = await a.backend.read_history("lobby", limit=0)

    assert [o for o, _ in after.messages] == [4, 5]
    assert [o for o, _ in before.messages] == [1, 2]
    assert [o for o, _ in limited.messages] == [4, 5]
    assert [o for o, _ in paged.messages] == [3, 4]
    assert (position_only.offset, position_only.messages) == (5, [])


async def test_a_read_of_a_new_room_creates_its_epoch(history_peers: HistoryPeers) -> None:
    (a,) = await history_peers(1)
    read = await a.backend.read_history("fresh")
    position = await a.backend.publish("fresh", "s-1", message(1, room="fresh"))
    assert (read.offset, read.messages) == (0, [])
    assert position == (1, read.epoch)


async def test_nodes_agree_on_a_room_position(history_peers: HistoryPeers) -> None:
    a, b = await history_peers(2)
    first = await a.backend.publish("lobby", "s-1", message(1))
    second = await b.backend.publish("lobby", "s-2", message(2))
    assert first is not None and second is not None
    assert (second.offset, second.epoch) == (2, first.epoch)


async def test_rotate_starts_a_new_epoch_from_offset_1(history_peers: HistoryPeers) -> None:
    (a,) = await history_peers(1)
    old = await a.backend.publish("lobby", "s-1", message(1))
    assert old is not None

    await a.backend.rotate_epoch("lobby", "e-not-current")
    assert (await a.backend.read_history("lobby")).epoch == old.epoch

    await a.backend.rotate_epoch("lobby", old.epoch)
    new = await a.backend.publish("lobby", "s-1", message(2))
    assert new is not None and new.offset == 1 and new.epoch != old.epoch
    assert [o for o, _ in (await a.backend.read_history("lobby")).messages] == [1]
