"""The inbound queue policy: bounded, drop-oldest, counted, warned about."""

from __future__ import annotations

import logging

import pytest

from roomcast_client import Disconnected, Reconnected
from roomcast_client.inbox import Inbox


async def test_full_queue_drops_the_oldest_and_counts_it() -> None:
    inbox: Inbox[object] = Inbox(3, "q")

    for i in range(5):
        inbox.put(i)

    assert inbox.dropped == 2
    assert [inbox.get_nowait() for _ in range(3)] == [2, 3, 4]


async def test_overflow_warns_once_per_episode(caplog: pytest.LogCaptureFixture) -> None:
    inbox: Inbox[object] = Inbox(2, "q")
    with caplog.at_level(logging.WARNING, logger="roomcast_client"):
        for i in range(10):
            inbox.put(i)
        while inbox.get_nowait() is not None:
            pass
        for i in range(3):
            inbox.put(i)

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "dropping the oldest" in warnings[0].getMessage()


async def test_lifecycle_events_outlive_room_events() -> None:
    inbox: Inbox[object] = Inbox(2, "q")
    gone = Disconnected(1006, "", reconnecting=True)
    back = Reconnected("s-1", "n-1", ("lobby",))

    for item in (gone, "m1", back, "m2"):
        inbox.put(item)

    assert [inbox.get_nowait() for _ in range(2)] == [back, "m2"]
    assert inbox.dropped == 2

    inbox.put(gone)
    inbox.put(back)
    inbox.put("m3")

    # Nothing but lifecycle events left to drop: the oldest goes.
    assert [inbox.get_nowait() for _ in range(2)] == [back, "m3"]


async def test_ended_queue_yields_what_is_left_then_raises_its_error() -> None:
    inbox: Inbox[object] = Inbox(5, "q")
    inbox.put("last")
    inbox.end(RuntimeError("ended"))

    assert await inbox.get() == "last"
    with pytest.raises(RuntimeError, match="ended"):
        await inbox.get()


async def test_quietly_ended_queue_stops_iteration() -> None:
    inbox: Inbox[object] = Inbox(5, "q")
    inbox.end()

    with pytest.raises(StopAsyncIteration):
        await inbox.get()
