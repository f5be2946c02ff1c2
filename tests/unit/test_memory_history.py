"""broker.backends.memory_history: the in-memory store keeps the positions
contract (docs/HISTORY-PRESENCE.md, "Positions" and "Options")."""

from __future__ import annotations

from broker.backends.memory_history import MemoryHistory
from protocol import with_position
from tests.support.fakes import FakeClock

PAYLOAD = b'{"type":"message","room":"r","from":"s-1","body":1}'


def history(
    size: int = 3, ttl: float = 10.0, meta_ttl: float = 100.0
) -> tuple[MemoryHistory, FakeClock]:
    clock = FakeClock()
    return MemoryHistory(size, ttl, meta_ttl, clock), clock


def test_offsets_start_at_1_and_grow_by_1_per_room() -> None:
    store, _ = history()
    assert [store.append("r", PAYLOAD)[0].offset for _ in range(3)] == [1, 2, 3]
    assert store.append("other", PAYLOAD)[0].offset == 1


def test_the_kept_frame_carries_its_position() -> None:
    store, _ = history()
    position, frame = store.append("r", PAYLOAD)
    assert frame == with_position(PAYLOAD, 1, position.epoch)
    assert store.read("r").messages == [(1, frame)]


def test_history_keeps_exactly_the_last_size_messages() -> None:
    store, _ = history(size=3)
    for _ in range(5):
        store.append("r", PAYLOAD)
    read = store.read("r")
    assert [offset for offset, _ in read.messages] == [3, 4, 5]
    assert read.offset == 5


def test_read_filters_after_before_and_limit() -> None:
    store, _ = history(size=10)
    for _ in range(6):
        store.append("r", PAYLOAD)
    assert [o for o, _ in store.read("r", after=4).messages] == [5, 6]
    assert [o for o, _ in store.read("r", before=3).messages] == [1, 2]
    assert [o for o, _ in store.read("r", limit=2).messages] == [5, 6]
    assert [o for o, _ in store.read("r", before=5, limit=2).messages] == [3, 4]
    assert store.read("r", limit=0).messages == []


def test_a_read_of_an_unknown_room_creates_its_epoch_at_offset_0() -> None:
    store, _ = history()
    read = store.read("new")
    assert read.offset == 0
    assert read.epoch
    assert store.append("new", PAYLOAD)[0] == (1, read.epoch)


def test_messages_expire_after_ttl_but_the_position_goes_on() -> None:
    store, clock = history(ttl=10.0, meta_ttl=100.0)
    position, _ = store.append("r", PAYLOAD)
    clock.now += 11.0
    read = store.read("r")
    assert read.messages == []
    assert (read.offset, read.epoch) == (1, position.epoch)
    assert store.append("r", PAYLOAD)[0] == (2, position.epoch)


def test_the_position_expires_after_meta_ttl_and_a_new_epoch_starts() -> None:
    store, clock = history(ttl=10.0, meta_ttl=100.0)
    first, _ = store.append("r", PAYLOAD)
    clock.now += 101.0
    second, _ = store.append("r", PAYLOAD)
    assert second.offset == 1
    assert second.epoch != first.epoch
    assert len(store) == 1


def test_rotate_starts_a_new_epoch_only_from_the_stale_one() -> None:
    store, _ = history()
    position, _ = store.append("r", PAYLOAD)
    store.rotate("r", "e-someone-else")
    assert store.read("r").epoch == position.epoch
    store.rotate("r", position.epoch)
    read = store.read("r")
    assert read.epoch != position.epoch
    assert read.offset == 0
