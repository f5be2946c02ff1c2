"""broker.outbox: one write per socket per loop iteration, and the
slow-consumer policy of :class:`WriteGuard`, driven on a real event loop with
a fake transport whose peer reads nothing."""

from __future__ import annotations

import asyncio

import pytest

from broker.frames import text_frame
from broker.outbox import DirectOutbox, FlushScheduler, FramedOutbox, SlowConsumerPolicy, WriteGuard
from tests.support.fakes import FakeTransport, next_turn

GRACE = 0.05
POLICY = SlowConsumerPolicy(high_water=1000, grace=GRACE, hard_limit=10_000)
X_FRAME = len(text_frame(b"x"))


class Harness:
    """One outbox and its guard on a fake transport; a cut-off closes the
    outbox, as the connection does, and is recorded."""

    def __init__(self, policy: SlowConsumerPolicy = POLICY) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport = FakeTransport()
        self.slow_calls: list[int] = []
        self.cut_off = asyncio.Event()
        self.guard = WriteGuard(self.loop, self.transport, policy, self._on_slow)
        self.outbox = FramedOutbox(FlushScheduler(self.loop), self.guard)

    def _on_slow(self, buffered: int) -> None:
        self.slow_calls.append(buffered)
        self.outbox.close()
        self.cut_off.set()

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

    await next_turn()

    assert harness.transport.writes == [text_frame(b"one") + shared + text_frame(b"three")]


async def test_a_single_frame_is_written_as_is(harness: Harness) -> None:
    frame = text_frame(b"only")
    harness.outbox.send(frame, b"only")
    await next_turn()
    assert harness.transport.writes == [frame]


async def test_sends_in_later_iterations_become_later_writes(harness: Harness) -> None:
    await harness.send_and_flush(b"first")
    await harness.send_and_flush(b"second")
    assert harness.transport.writes == [text_frame(b"first"), text_frame(b"second")]


async def test_one_scheduler_flushes_every_dirty_outbox_in_one_callback() -> None:
    loop = asyncio.get_running_loop()
    scheduler = FlushScheduler(loop)
    transports = [FakeTransport() for _ in range(3)]
    for transport in transports:
        guard = WriteGuard(loop, transport, POLICY, lambda _: None)
        outbox = FramedOutbox(scheduler, guard)
        outbox.send_payload(b"x")
        outbox.send_payload(b"y")

    await next_turn()

    assert [t.writes for t in transports] == [[text_frame(b"x") + text_frame(b"y")]] * 3
    assert (scheduler.flushes, scheduler.writes) == (1, 3)


async def test_flush_now_writes_every_dirty_outbox_before_the_loop_turns() -> None:
    loop = asyncio.get_running_loop()
    scheduler = FlushScheduler(loop)
    transport = FakeTransport()
    outbox = FramedOutbox(scheduler, WriteGuard(loop, transport, POLICY, print))
    outbox.send_payload(b"last words")
    scheduler.flush_now()
    assert transport.writes == [text_frame(b"last words")]


async def test_flush_writes_at_once(harness: Harness) -> None:
    harness.outbox.send_payload(b"now")
    harness.outbox.flush()
    assert harness.transport.writes == [text_frame(b"now")]
    await next_turn()
    assert harness.transport.writes == [text_frame(b"now")]


async def test_replies_past_the_high_water_mark_are_written_at_once(harness: Harness) -> None:
    # One loop iteration may read megabytes of requests: their replies must
    # reach the transport (and its back-pressure) before the iteration ends.
    reply = b"r" * (POLICY.high_water // 2)
    for _ in range(3):
        harness.outbox.send_payload(reply)
    assert harness.transport.writes == [text_frame(reply) * 3]


# --- closing ---------------------------------------------------------------------


async def test_nothing_is_written_after_close(harness: Harness) -> None:
    harness.outbox.send_payload(b"queued")
    harness.outbox.close()
    harness.outbox.send_payload(b"late")
    await next_turn()
    assert harness.transport.writes == []


async def test_nothing_is_written_once_the_websocket_is_not_open(harness: Harness) -> None:
    harness.outbox.send_payload(b"queued")
    harness.guard.open = False
    await next_turn()
    assert harness.transport.writes == []


# --- slow consumers --------------------------------------------------------------


async def test_a_closed_guard_lets_no_fan_out_frame_through(harness: Harness) -> None:
    harness.outbox.send_payload(b"queued")
    harness.guard.close()
    await next_turn()
    assert harness.transport.writes == []


async def test_slow_for_longer_than_the_grace_is_cut_off_once(harness: Harness) -> None:
    harness.transport.buffered = POLICY.high_water + 1
    await harness.send_and_flush(b"x")
    assert harness.slow_calls == []

    await asyncio.wait_for(harness.cut_off.wait(), GRACE * 40)

    assert harness.slow_calls == [POLICY.high_water + 1 + X_FRAME]
    assert harness.guard.tripped


async def test_sends_after_a_cut_off_are_dropped(harness: Harness) -> None:
    harness.transport.buffered = POLICY.high_water + 1
    await harness.send_and_flush(b"x")
    await asyncio.wait_for(harness.cut_off.wait(), GRACE * 40)
    writes = len(harness.transport.writes)

    for _ in range(3):
        await harness.send_and_flush(b"dropped")

    assert len(harness.transport.writes) == writes
    assert len(harness.slow_calls) == 1


async def test_a_write_that_would_pass_the_hard_limit_is_not_made(harness: Harness) -> None:
    harness.transport.buffered = POLICY.hard_limit - X_FRAME + 1
    await harness.send_and_flush(b"x")
    assert harness.transport.writes == []
    assert harness.slow_calls == [POLICY.hard_limit - X_FRAME + 1]


async def test_a_write_that_reaches_the_hard_limit_exactly_is_made(harness: Harness) -> None:
    harness.transport.buffered = POLICY.hard_limit - X_FRAME
    await harness.send_and_flush(b"x")
    assert harness.transport.writes == [text_frame(b"x")]
    assert harness.slow_calls == []


async def test_hard_limit_cut_off_is_reported_once(harness: Harness) -> None:
    harness.transport.buffered = POLICY.hard_limit
    assert not harness.guard.write(b"a")
    assert not harness.guard.write(b"b")
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


async def test_drained_ends_the_grace_period(harness: Harness) -> None:
    harness.transport.buffered = POLICY.high_water + 1
    await harness.send_and_flush(b"x")
    harness.guard.drained()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(harness.cut_off.wait(), GRACE * 4)


async def test_at_high_water_exactly_is_not_slow(harness: Harness) -> None:
    harness.transport.buffered = POLICY.high_water - X_FRAME
    await harness.send_and_flush(b"x")
    assert harness.transport.buffered == POLICY.high_water
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(harness.cut_off.wait(), GRACE * 4)


async def test_a_closed_guard_cuts_nothing_off(harness: Harness) -> None:
    harness.transport.buffered = POLICY.hard_limit
    harness.guard.close()
    assert not harness.guard.write(b"x")
    assert harness.slow_calls == []


# --- compressed connections --------------------------------------------------------


def test_direct_outbox_sends_each_payload_at_once() -> None:
    sent: list[bytes] = []
    outbox = DirectOutbox(sent.append)
    outbox.send(text_frame(b"shared"), b"shared")
    outbox.send_payload(b"own")
    assert sent == [b"shared", b"own"]


def test_direct_outbox_drops_what_it_is_given_once_closed() -> None:
    sent: list[bytes] = []
    outbox = DirectOutbox(sent.append)
    outbox.close()
    outbox.send_payload(b"late")
    outbox.flush()
    assert sent == []
