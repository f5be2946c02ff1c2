"""Room positions without a server: a router and its queues fed plain
protocol Structs, the positions told of ``ok`` replies as the requests do
(docs/HISTORY-PRESENCE.md, "Positions" and "Recovery")."""

from __future__ import annotations

import msgspec

from protocol import Joined, Message, Ok, Position
from roomcast_client import Event, Gap, Reconnected
from roomcast_client.positions import _MAX_AHEAD, Positions
from roomcast_client.router import Router

EPOCH = "e-1"


def _message(offset: int, room: str = "lobby", epoch: str = EPOCH) -> Message:
    return Message(
        room=room, from_="s-other", body=msgspec.Raw(b"%d" % offset), offset=offset, epoch=epoch
    )


def _ok(offset: int, epoch: str = EPOCH, recovered: bool | None = None) -> Ok:
    return Ok(
        ref=1,
        offset=offset,
        epoch=epoch,
        recovered=msgspec.UNSET if recovered is None else recovered,
    )


def _router(max_queue: int = 100) -> tuple[Router, Positions]:
    positions = Positions()
    return Router(max_queue, positions), positions


async def _read(router: Router, count: int) -> list[Event]:
    return [await router.get() for _ in range(count)]


def _offsets(events: list[Event]) -> list[int]:
    return [e.offset for e in events if isinstance(e, Message) and isinstance(e.offset, int)]


async def test_join_sets_the_position_of_its_ok() -> None:
    _, positions = _router()

    positions.joined("lobby", _ok(7))

    assert positions.position("lobby") == Position(offset=7, epoch=EPOCH)


async def test_room_without_history_has_no_position_and_no_deduplication() -> None:
    router, positions = _router()
    positions.joined("lobby", Ok(ref=1))
    plain = Message(room="lobby", from_="s-other", body=msgspec.Raw(b"1"))

    router.room_event(plain)
    router.room_event(plain)

    assert positions.position("lobby") is None
    assert await _read(router, 2) == [plain, plain]


async def test_position_moves_when_the_application_reads_not_when_queued() -> None:
    router, positions = _router()
    positions.joined("lobby", _ok(0))

    router.room_event(_message(1))
    router.room_event(_message(2))
    assert positions.position("lobby") == Position(offset=0, epoch=EPOCH)

    await router.get()
    assert positions.position("lobby") == Position(offset=1, epoch=EPOCH)


async def test_own_say_next_in_line_moves_the_position() -> None:
    _, positions = _router()
    positions.joined("lobby", _ok(3))

    positions.said("lobby", _ok(4))

    assert positions.position("lobby") == Position(offset=4, epoch=EPOCH)


async def test_own_say_past_an_unread_message_moves_the_position_once_it_is_read() -> None:
    router, positions = _router()
    positions.joined("lobby", _ok(0))
    router.room_event(_message(1))

    positions.said("lobby", _ok(2))
    assert positions.position("lobby") == Position(offset=0, epoch=EPOCH)

    await router.get()
    assert positions.position("lobby") == Position(offset=2, epoch=EPOCH)


async def test_message_read_before_the_ok_of_an_earlier_own_say_waits_for_it() -> None:
    router, positions = _router()
    positions.joined("lobby", _ok(0))
    router.room_event(_message(2))  # the ok of our say at offset 1 is still on its way

    await router.get()
    assert positions.position("lobby") == Position(offset=0, epoch=EPOCH)

    positions.said("lobby", _ok(1))
    assert positions.position("lobby") == Position(offset=2, epoch=EPOCH)


async def test_replayed_messages_already_queued_are_not_delivered_twice() -> None:
    router, positions = _router()
    positions.joined("lobby", _ok(0))
    for offset in (1, 2, 3):
        router.room_event(_message(offset))  # queued, unread: the position stays 0

    # Reconnect: re-joined from offset 0, recovered; 1..5 replayed.
    router.hold()
    for offset in (1, 2, 3, 4, 5):
        router.room_event(_message(offset))
    positions.joined("lobby", _ok(5, recovered=True))
    router.release(Reconnected("s-new", "n-1", ("lobby",), recovered={"lobby": True}))

    events = await _read(router, 6)
    assert _offsets(events) == [1, 2, 3, 4, 5]
    assert positions.position("lobby") == Position(offset=5, epoch=EPOCH)


async def test_replayed_own_says_are_not_delivered() -> None:
    router, positions = _router()
    positions.joined("lobby", _ok(0))
    positions.said("lobby", _ok(1))

    router.room_event(_message(1))
    router.room_event(_message(2))

    assert _offsets(await _read(router, 1)) == [2]


async def test_recovered_rejoin_keeps_the_position_until_replayed_messages_are_read() -> None:
    _, positions = _router()
    positions.joined("lobby", _ok(4))

    positions.joined("lobby", _ok(9, recovered=True))

    assert positions.position("lobby") == Position(offset=4, epoch=EPOCH)


async def test_rejoin_not_recovered_takes_the_position_of_its_ok() -> None:
    _, positions = _router()
    positions.joined("lobby", _ok(4))

    positions.joined("lobby", _ok(9, recovered=False))

    assert positions.position("lobby") == Position(offset=9, epoch=EPOCH)


async def test_join_in_a_new_epoch_takes_the_position_of_its_ok() -> None:
    _, positions = _router()
    positions.joined("lobby", _ok(4))

    positions.joined("lobby", _ok(2, epoch="e-2", recovered=True))

    assert positions.position("lobby") == Position(offset=2, epoch="e-2")


async def test_join_of_a_room_already_joined_keeps_the_position() -> None:
    router, positions = _router()
    positions.joined("lobby", _ok(0))
    router.room_event(_message(1))

    positions.joined("lobby", _ok(1))  # no-op join: the room's position, not ours

    assert positions.position("lobby") == Position(offset=0, epoch=EPOCH)


async def test_queued_message_of_an_old_epoch_is_delivered_without_moving_the_position() -> None:
    router, positions = _router()
    positions.joined("lobby", _ok(0))
    router.room_event(_message(1))
    positions.joined("lobby", _ok(3, epoch="e-2", recovered=False))

    assert _offsets(await _read(router, 1)) == [1]
    assert positions.position("lobby") == Position(offset=3, epoch="e-2")


async def test_leave_forgets_the_position() -> None:
    _, positions = _router()
    positions.joined("lobby", _ok(4))

    positions.forget("lobby")

    assert positions.position("lobby") is None


async def test_dropped_messages_are_one_gap_read_first_that_moves_the_position() -> None:
    router, positions = _router(max_queue=2)
    positions.joined("lobby", _ok(0))
    for offset in (1, 2, 3, 4):
        router.room_event(_message(offset))

    gap = await router.get()

    assert gap == Gap("lobby", EPOCH, after_offset=0, last_offset=2, dropped=2)
    assert positions.position("lobby") == Position(offset=2, epoch=EPOCH)
    assert _offsets(await _read(router, 2)) == [3, 4]


async def test_gap_spans_own_says_between_dropped_messages() -> None:
    router, positions = _router(max_queue=1)
    positions.joined("lobby", _ok(0))
    router.room_event(_message(1))
    positions.said("lobby", _ok(2))
    router.room_event(_message(3))
    router.room_event(_message(4))

    gap = await router.get()

    assert gap == Gap("lobby", EPOCH, after_offset=0, last_offset=3, dropped=2)
    assert _offsets(await _read(router, 1)) == [4]
    assert positions.position("lobby") == Position(offset=4, epoch=EPOCH)


async def test_a_views_full_queue_reports_the_gap_in_the_view() -> None:
    router, positions = _router()
    positions.joined("lobby", _ok(0))
    view = router.open_view("lobby", max_queue=1)

    router.room_event(_message(1))
    router.room_event(_message(2))

    assert await view.receive() == Gap("lobby", EPOCH, 0, 1, 1)
    assert len(router) == 0


async def test_dropped_membership_events_make_no_gap() -> None:
    router, positions = _router(max_queue=1)
    positions.joined("lobby", _ok(0))
    router.room_event(Joined(room="lobby", session="s-2"))
    router.room_event(_message(1))

    assert _offsets(await _read(router, 1)) == [1]
    assert len(router) == 0


async def test_offsets_that_never_arrive_stop_holding_the_position_back() -> None:
    _, positions = _router()
    positions.joined("lobby", _ok(0))

    for offset in range(2, _MAX_AHEAD + 3):  # offset 1 never comes
        positions.said("lobby", _ok(offset))

    assert positions.position("lobby") == Position(offset=_MAX_AHEAD + 2, epoch=EPOCH)


async def test_closing_a_view_gives_up_its_pending_gap() -> None:
    router, positions = _router()
    positions.joined("lobby", _ok(0))
    view = router.open_view("lobby", max_queue=1)
    router.room_event(_message(1))
    router.room_event(_message(2))

    view.close()

    assert positions.position("lobby") == Position(offset=2, epoch=EPOCH)


async def test_closing_a_view_gives_up_its_unread_messages() -> None:
    router, positions = _router()
    positions.joined("lobby", _ok(0))
    view = router.open_view("lobby")
    router.room_event(_message(1))
    router.room_event(_message(2))

    view.close()

    assert positions.position("lobby") == Position(offset=2, epoch=EPOCH)


async def test_not_recovered_lists_the_rooms_whose_messages_may_be_lost() -> None:
    back = Reconnected("s-1", "n-1", ("a", "b", "c"), recovered={"a": True, "b": False})

    assert back.not_recovered == ("b", "c")
