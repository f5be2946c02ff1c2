"""broker.sequencer: one room's messages handed on in offset order, once,
with gaps filled from history (docs/HISTORY-PRESENCE.md, "No lost messages
inside the cluster")."""

from __future__ import annotations

from broker.backends.base import Delivery, HistoryRead
from broker.sequencer import MAX_HELD, RoomSequence
from protocol import with_position

ROOM = "lobby"


def message(offset: int, epoch: str = "e-1", sender: str = "s-a") -> Delivery:
    payload = b'{"type":"message","room":"lobby","from":"%s","body":%d}' % (sender.encode(), offset)
    return Delivery(ROOM, sender, with_position(payload, offset, epoch), 1.0, offset, epoch)


def stored(offset: int, epoch: str = "e-1", sender: str = "s-a") -> tuple[int, bytes]:
    return offset, message(offset, epoch, sender).payload


def started(offset: int = 0, epoch: str = "e-1") -> RoomSequence:
    sequence = RoomSequence(ROOM)
    assert sequence.start(HistoryRead(epoch, offset, [])) == []
    return sequence


def offsets(deliveries: list[Delivery]) -> list[int]:
    return [delivery.offset for delivery in deliveries]


def test_a_new_sequence_knows_no_position() -> None:
    sequence = RoomSequence(ROOM)
    assert not sequence.started
    assert sequence.epoch is None


def test_before_start_every_arrival_is_held() -> None:
    sequence = RoomSequence(ROOM)
    assert sequence.take(message(1)) is False
    assert sequence.gap


def test_start_releases_what_follows_the_position_and_drops_the_rest() -> None:
    sequence = RoomSequence(ROOM)
    for offset in (3, 4, 6):
        sequence.take(message(offset))

    released = sequence.start(HistoryRead("e-1", 3, []))

    assert offsets(released) == [4]
    assert sequence.offset == 4
    assert sequence.gap  # 6 waits for 5


def test_the_next_offset_is_handed_on() -> None:
    sequence = started(offset=7)
    assert sequence.take(message(8)) is True
    assert sequence.offset == 8
    assert not sequence.gap


def test_an_offset_already_handed_on_is_dropped() -> None:
    sequence = started(offset=7)
    assert sequence.take(message(7)) is False
    assert sequence.take(message(2)) is False
    assert not sequence.gap
    assert sequence.offset == 7


def test_an_offset_beyond_the_next_is_held_as_a_gap() -> None:
    sequence = started(offset=1)
    assert sequence.take(message(3)) is False
    assert sequence.gap
    assert offsets(list(sequence.held())) == [3]


def test_the_missing_offset_releases_what_was_held_in_order() -> None:
    sequence = started(offset=1)
    sequence.take(message(4))
    sequence.take(message(3))

    assert sequence.take(message(2)) is True
    assert offsets(sequence.ready()) == [3, 4]
    assert sequence.offset == 4
    assert not sequence.gap


def test_a_fill_hands_on_the_missing_messages_then_the_held_ones() -> None:
    sequence = started(offset=1)
    sequence.take(message(4))

    handed = sequence.fill(HistoryRead("e-1", 4, [stored(2), stored(3), stored(4)]))

    assert offsets(handed) == [2, 3, 4]
    assert sequence.offset == 4
    assert not sequence.gap


def test_a_filled_message_is_not_handed_back_to_its_sender() -> None:
    sequence = started(offset=0)
    handed = sequence.fill(HistoryRead("e-1", 1, [stored(1, sender="s-me")]))
    assert handed[0].exclude == "s-me"


def test_a_fill_that_finds_messages_gone_counts_them_lost_and_moves_on() -> None:
    sequence = started(offset=1)
    sequence.take(message(6))

    handed = sequence.fill(HistoryRead("e-1", 6, [stored(5), stored(6)]))

    assert offsets(handed) == [5, 6]
    assert sequence.lost == 3  # 2, 3 and 4 had left history
    assert not sequence.gap


def test_a_fill_past_expired_messages_takes_the_store_position() -> None:
    sequence = started(offset=1)
    handed = sequence.fill(HistoryRead("e-1", 9, []))
    assert handed == []
    assert sequence.offset == 9
    assert sequence.lost == 8


def test_a_fill_in_a_new_epoch_hands_on_all_of_it_from_offset_1() -> None:
    sequence = started(offset=40, epoch="e-old")
    sequence.take(message(2, epoch="e-new"))

    handed = sequence.fill(HistoryRead("e-new", 2, [stored(1, "e-new"), stored(2, "e-new")]))

    assert [(d.epoch, d.offset) for d in handed] == [("e-new", 1), ("e-new", 2)]
    assert sequence.epoch == "e-new"
    assert not sequence.gap


def test_arrivals_of_a_stale_epoch_are_dropped_by_a_fill() -> None:
    sequence = started(offset=1, epoch="e-new")
    sequence.take(message(9, epoch="e-old"))
    sequence.fill(HistoryRead("e-new", 1, []))
    assert not sequence.gap


def test_a_store_behind_the_node_in_the_same_epoch_is_detected() -> None:
    sequence = started(offset=10)
    assert sequence.behind(HistoryRead("e-1", 4, []))
    assert not sequence.behind(HistoryRead("e-1", 10, []))
    assert not sequence.behind(HistoryRead("e-2", 4, []))


def test_held_arrivals_are_bounded() -> None:
    sequence = started(offset=0)
    for offset in range(2, MAX_HELD + 12):
        sequence.take(message(offset))
    assert len(sequence.held()) == MAX_HELD
    assert sequence.lost == 10


def test_a_read_begun_before_live_messages_moved_the_node_on_is_not_behind() -> None:
    sequence = started(offset=10)
    # The read began when the node had handed on 10; 11 and 12 came live
    # while it was under way.
    read = HistoryRead("e-1", 10, [])
    sequence.take(message(11))
    sequence.take(message(12))
    assert not sequence.behind(read, handed=10)
    assert sequence.behind(HistoryRead("e-1", 9, []), handed=10)
