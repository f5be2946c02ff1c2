"""broker.outbox: one write per socket per loop iteration, and the
slow-consumer policy, driven on a real event loop with a fake transport."""

from __future__ import annotations

import asyncio

import pytest

from broker.frames import text_frame
from broker.outbox import FlushScheduler, FramedOutbox, SlowConsumerPolicy

GRACE = 0.05
POLICY = SlowConsumerPolicy(high_water=1000, grace=GRACE, hard_limit=10_000)


class FakeTransport:
    """Records writes; its buffered byte count is whatever the test sets."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.buffered = 0

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered


async def next_turn() -> None:
    """Return once every callback already scheduled with ``call_soon`` has run."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.call_soon(done.set_result, None)
    await done


class Harness:
    """One outbox on a fake transport, recording every ``on_slow`` call."""

    def __init__(self, policy: SlowConsumerPolicy = POLICY) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport = FakeTransport()
        self.open = True
        self.slow_calls: list[int] = []
        self.cut_off = asyncio.Event()
        self.outbox = FramedOutbox(
            self.transport,
            lambda: self.open,
            FlushScheduler(self.loop),
            policy,
            self._on_slow,
        )

    def _on_slow(self, buffered: int) -> None:
        self.slow_calls.append(buffered)
        self.cut_off.set()

    async def next_turn(self) -> None:
        await next_turn()

    async def send_and_flush(self, payload: bytes) -> None:
        self.outbox.send_payload(payload)
        await next_turn()


@pytest.fixture
async def harness() -> Harness:
    return Harness()


# --- coalescing ------------------------------------------------------------------


async def test_nothing_is_written_before_the_loop_turns(harness: Harness) -> None:
    harness.outbox.send_payload(b"a")
    assert harness.transport.writes == []


async def test_sends_in_one_iteration_become_one_write_in_order(harness: Harness) -> None:
    shared = text_frame(b"shared")
    harness.outbox.send_payload(b"one")
    harness.outbox.send(shared, b"shared")
    harness.outbox.send_payload(b"three")

    await harness.next_turn()

    assert harness.transport.writes == [text_frame(b"one") + shared + text_frame(b"three")]


async def test_a_single_frame_is_written_as_is(harness: Harness) -> None:
    frame = text_frame(b"only")
    harness.outbox.send(frame, b"only")
    await harness.next_turn()
    assert harness.transport.writes == [frame]
    assert harness.transport.writes[0] is frame


async def test_sends_in_later_iterations_become_later_writes(harness: Harness) -> None:
    await harness.send_and_flush(b"first")
    await harness.send_and_flush(b"second")
    assert harness.transport.writes == [text_frame(b"first"), text_frame(b"second")]


async def test_one_scheduler_flushes_every_dirty_outbox_in_one_callback() -> None:
    scheduler = FlushScheduler(asyncio.get_running_loop())
    transports = [FakeTransport() for _ in range(3)]
    for transport in transports:
        outbox = FramedOutbox(transport, lambda: True, scheduler, POLICY, lambda _: None)
        outbox.send_payload(b"x")
        outbox.send_payload(b"y")

    await next_turn()

    assert [t.writes for t in transports] == [[text_frame(b"x") + text_frame(b"y")]] * 3
    assert (scheduler.flushes, scheduler.writes) == (1, 3)


async def test_flush_writes_at_once(harness: Harness) -> None:
    harness.outbox.send_payload(b"now")
    harness.outbox.flush()
    assert harness.transport.writes == [text_frame(b"now")]
    await harness.next_turn()
    assert harness.transport.writes == [text_frame(b"now")]


# --- closing ---------------------------------------------------------------------


async def test_nothing_is_written_after_close(harness: Harness) -> None:
    harness.outbox.send_payload(b"queued")
    harness.outbox.close()
    harness.outbox.send_payload(b"late")
    await harness.next_turn()
    assert harness.transport.writes == []


async def test_nothing_is_written_once_the_websocket_is_not_open(harness: Harness) -> None:
    harness.outbox.send_payload(b"queued")
    harness.open = False
    await harness.next_turn()
    assert harness.transport.writes == []


# --- slow consumers --------------------------------------------------------------


async def test_slow_for_longer_than_the_grace_is_cut_off_once(harness: Harness) -> None:
    harness.transport.buffered = POLICY.high_water + 1
    await harness.send_and_flush(b"x")
    assert harness.slow_calls == []

    await asyncio.wait_for(harness.cut_off.wait(), GRACE * 40)

    assert harness.slow_calls == [POLICY.high_water + 1]
    assert harness.outbox.closed


async def test_sends_after_a_cut_off_are_dropped(harness: Harness) -> None:
    harness.transport.buffered = POLICY.high_water + 1
    await harness.send_and_flush(b"x")
    await asyncio.wait_for(harness.cut_off.wait(), GRACE * 40)
    writes = len(harness.transport.writes)

    for _ in range(3):
        await harness.send_and_flush(b"dropped")

    assert len(harness.transport.writes) == writes
    assert len(harness.slow_calls) == 1


async def test_at_the_hard_limit_a_member_is_cut_off_at_once(harness: Harness) -> None:
    harness.transport.buffered = POLICY.hard_limit
    await harness.send_and_flush(b"x")
    assert harness.slow_calls == [POLICY.hard_limit]
    assert harness.outbox.closed


async def test_hard_limit_cut_off_is_reported_once(harness: Harness) -> None:
    harness.transport.buffered = POLICY.hard_limit
    await harness.send_and_flush(b"x")
    await harness.send_and_flush(b"y")
    await asyncio.sleep(GRACE * 2)  # let a stray grace timer fire, if any
    assert len(harness.slow_calls) == 1


async def test_back_under_high_water_within_the_grace_is_not_cut_off(harness: Harness) -> None:
    harness.transport.buffered = POLICY.high_water + 1
    await harness.send_and_flush(b"x")
    harness.transport.buffered = 0

    # An absence: wait well past the grace and see nothing happen.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(harness.cut_off.wait(), GRACE * 4)

    assert not harness.outbox.closed
    await harness.send_and_flush(b"still served")
    assert harness.transport.writes[-1] == text_frame(b"still served")


async def test_at_high_water_exactly_is_not_slow(harness: Harness) -> None:
    harness.transport.buffered = POLICY.high_water
    await harness.send_and_flush(b"x")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(harness.cut_off.wait(), GRACE * 4)
