"""broker.subscriptions: the first holder of a room subscribes the node, the
last one to release it unsubscribes it; concurrent holders share one subscribe."""

from __future__ import annotations

import asyncio

import pytest

from broker.backends.base import BackendUnavailable
from broker.subscriptions import RoomSubscriptions
from tests.support.fakes import GatedBackend, next_turn


@pytest.fixture
def backend() -> GatedBackend:
    return GatedBackend()


@pytest.fixture
def subscriptions(backend: GatedBackend) -> RoomSubscriptions:
    return RoomSubscriptions(backend.subscribe, backend.unsubscribe)


async def test_first_acquire_subscribes_the_room(
    subscriptions: RoomSubscriptions, backend: GatedBackend
) -> None:
    await subscriptions.acquire("lobby")
    assert backend.rooms == {"lobby"}


async def test_second_acquire_does_not_subscribe_again(
    subscriptions: RoomSubscriptions, backend: GatedBackend
) -> None:
    await subscriptions.acquire("lobby")
    await subscriptions.acquire("lobby")
    assert backend.calls == ["subscribe lobby"]


async def test_concurrent_acquires_wait_for_one_subscribe(
    subscriptions: RoomSubscriptions, backend: GatedBackend
) -> None:
    backend.gate.clear()
    first = asyncio.ensure_future(subscriptions.acquire("lobby"))
    second = asyncio.ensure_future(subscriptions.acquire("lobby"))
    await next_turn()
    await next_turn()
    assert not first.done() and not second.done()
    backend.gate.set()
    await asyncio.gather(first, second)
    assert backend.calls == ["subscribe lobby"]


async def test_release_of_one_of_two_holders_keeps_the_room(
    subscriptions: RoomSubscriptions, backend: GatedBackend
) -> None:
    await subscriptions.acquire("lobby")
    await subscriptions.acquire("lobby")
    subscriptions.release("lobby")
    assert backend.rooms == {"lobby"}


async def test_last_release_unsubscribes_the_room(
    subscriptions: RoomSubscriptions, backend: GatedBackend
) -> None:
    await subscriptions.acquire("lobby")
    await subscriptions.acquire("lobby")
    subscriptions.release("lobby")
    subscriptions.release("lobby")
    assert backend.calls == ["subscribe lobby", "unsubscribe lobby"]


async def test_a_failed_subscribe_raises_and_holds_nothing(
    subscriptions: RoomSubscriptions, backend: GatedBackend
) -> None:
    backend.fail = True
    with pytest.raises(BackendUnavailable):
        await subscriptions.acquire("lobby")
    assert backend.calls == ["subscribe lobby", "unsubscribe lobby"]
    backend.fail = False
    await subscriptions.acquire("lobby")  # a later acquire subscribes afresh
    assert backend.rooms == {"lobby"}


async def test_a_failed_subscribe_fails_every_waiter(
    subscriptions: RoomSubscriptions, backend: GatedBackend
) -> None:
    backend.gate.clear()
    backend.fail = True
    waiters = [asyncio.ensure_future(subscriptions.acquire("lobby")) for _ in range(2)]
    await next_turn()
    backend.gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(result, BackendUnavailable) for result in results)
    assert backend.calls == ["subscribe lobby", "unsubscribe lobby"]


async def test_a_cancelled_waiter_does_not_cancel_the_others(
    subscriptions: RoomSubscriptions, backend: GatedBackend
) -> None:
    backend.gate.clear()
    quitter = asyncio.ensure_future(subscriptions.acquire("lobby"))
    stayer = asyncio.ensure_future(subscriptions.acquire("lobby"))
    await next_turn()
    quitter.cancel()
    await next_turn()
    backend.gate.set()
    await stayer
    assert backend.rooms == {"lobby"}


async def test_the_last_waiter_giving_up_unsubscribes_the_room(
    subscriptions: RoomSubscriptions, backend: GatedBackend
) -> None:
    backend.gate.clear()
    waiter = asyncio.ensure_future(subscriptions.acquire("lobby"))
    await next_turn()
    waiter.cancel()  # its release is the last one: the subscribe is still pending
    await next_turn()
    backend.gate.set()
    for _ in range(3):
        await next_turn()
    assert backend.calls == ["subscribe lobby", "unsubscribe lobby"]
