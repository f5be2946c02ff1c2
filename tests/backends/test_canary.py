"""The canary: readiness only after a round trip through the current
subscription, deafness only for a canary Redis took (on fakeredis: the
publisher side; the subscription side is played by the test)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import fakeredis
import pytest

from broker.backends.redis.canary import Canary
from broker.backends.redis.publisher import Publisher

CHANNEL = b"{t:node:n-self}"


class FakeSubscription:
    """The subscriber as the canary sees it: up, and rebuilt on request.
    ``busy`` makes it report traffic arriving all the time."""

    def __init__(self, *, busy: bool = False) -> None:
        self.rebuilt = asyncio.Event()
        self.busy = busy

    @property
    def up(self) -> bool:
        return True

    @property
    def last_received(self) -> float:
        return time.monotonic() if self.busy else 0.0

    async def rebuild(self) -> None:
        self.rebuilt.set()


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
async def publisher(server: fakeredis.FakeServer) -> AsyncIterator[Publisher]:
    client = fakeredis.FakeAsyncRedis(server=server)
    yield Publisher(client)
    await client.aclose()


def canary(publisher: Publisher, interval: float = 60.0, timeout: float = 3.0) -> Canary:
    return Canary(publisher, CHANNEL, interval, timeout)


async def test_not_fresh_before_a_canary_came_back(publisher: Publisher) -> None:
    probe = canary(publisher)
    probe.restart()

    await probe.probe()

    assert not probe.fresh()


async def test_fresh_once_a_canary_it_published_came_back(publisher: Publisher) -> None:
    probe = canary(publisher)
    probe.restart()
    await probe.probe()

    probe.back(b"1")

    assert probe.fresh()
    assert probe.lag >= 0.0


async def test_a_canary_published_before_the_subscription_proves_nothing(
    publisher: Publisher,
) -> None:
    probe = canary(publisher)
    await probe.probe()
    probe.restart()  # a new subscription: canary 1 was sent before it

    probe.back(b"1")

    assert not probe.fresh()


async def test_a_new_subscription_must_carry_a_canary_again(publisher: Publisher) -> None:
    probe = canary(publisher)
    probe.restart()
    await probe.probe()
    probe.back(b"1")

    probe.restart()

    assert not probe.fresh()


async def test_a_malformed_canary_is_ignored(publisher: Publisher) -> None:
    probe = canary(publisher)
    probe.restart()
    await probe.probe()

    probe.back(b"not a number")

    assert not probe.fresh()


async def test_a_refused_canary_marks_the_publisher_down_and_logs_why_once(
    server: fakeredis.FakeServer, publisher: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    probe = canary(publisher)
    probe.restart()
    server.connected = False

    with caplog.at_level(logging.WARNING, logger="broker.redis"):
        await probe.probe()
        await probe.probe()

    assert not publisher.up
    failures = [r for r in caplog.records if "canary publish failed" in r.getMessage()]
    assert len(failures) == 1, caplog.text
    assert "not ready" in failures[0].getMessage()


async def test_a_canary_that_works_again_marks_the_publisher_up(
    server: fakeredis.FakeServer, publisher: Publisher
) -> None:
    probe = canary(publisher)
    server.connected = False
    await probe.probe()
    server.connected = True

    await probe.probe()

    assert publisher.up


async def test_a_canary_redis_took_that_never_came_back_rebuilds_the_subscription(
    publisher: Publisher,
) -> None:
    probe = canary(publisher, interval=0.02, timeout=0.05)
    probe.restart()
    subscription = FakeSubscription()
    runner = asyncio.create_task(probe.run(subscription))
    try:
        await asyncio.wait_for(subscription.rebuilt.wait(), 5)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)

    assert probe.misses == 1


async def test_a_late_canary_behind_other_traffic_does_not_rebuild_the_subscription(
    publisher: Publisher,
) -> None:
    # A node too busy to read its canary in time is behind, not deaf:
    # rebuilding would drop everything it has not read yet.
    probe = canary(publisher, interval=0.02, timeout=0.05)
    probe.restart()
    subscription = FakeSubscription(busy=True)
    runner = asyncio.create_task(probe.run(subscription))
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(subscription.rebuilt.wait(), 0.5)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)

    assert probe.misses == 0
    assert not probe.fresh()  # not ready, all the same


async def test_the_first_canary_goes_at_once(
    server: fakeredis.FakeServer, publisher: Publisher
) -> None:
    listener = fakeredis.FakeAsyncRedis(server=server)
    pubsub = listener.pubsub()
    await pubsub.ssubscribe(CHANNEL)  # sharded, like the node's subscription
    await pubsub.get_message(timeout=5)  # the subscribe confirmation
    runner = asyncio.create_task(canary(publisher, interval=60.0).run(FakeSubscription()))
    try:
        first = await pubsub.get_message(timeout=5)

        assert first is not None, "no canary within 5 s (interval is 60 s)"
        assert first["data"] == b"1"
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await listener.aclose()
