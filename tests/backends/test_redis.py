"""RedisBackend against a real redis-server that fails: a publish Redis did
not take fails with BackendUnavailable, so the node can answer ``unavailable``
(PROTOCOL.md, "Error codes")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from broker.backends import BackendUnavailable, Delivery
from broker.backends.redis import RedisBackend, redis_client_factory
from tests.support.processes import RedisServer

pytestmark = pytest.mark.redis


def ignore(batch: Sequence[Delivery]) -> None:
    """A DeliverBatch for a node that only publishes."""


@pytest.fixture
async def backend(redis_server: RedisServer) -> AsyncIterator[RedisBackend]:
    backend = RedisBackend(
        redis_client_factory(redis_server.url, timeout=1.0), node="n-a", namespace="t"
    )
    await backend.start(ignore)
    yield backend
    await backend.close()


async def test_publish_fails_with_backend_unavailable_when_redis_is_killed(
    backend: RedisBackend, redis_server: RedisServer
) -> None:
    await backend.publish("lobby", "s-1", b"before")

    redis_server.kill()

    with pytest.raises(BackendUnavailable):
        await asyncio.wait_for(backend.publish("lobby", "s-1", b"after"), 10)


async def test_backend_is_unhealthy_after_a_failed_publish(
    backend: RedisBackend, redis_server: RedisServer
) -> None:
    redis_server.kill()
    with pytest.raises(BackendUnavailable):
        await asyncio.wait_for(backend.publish("lobby", "s-1", b"after"), 10)
    assert not backend.healthy()


async def test_start_fails_with_backend_unavailable_when_redis_is_down(
    redis_server: RedisServer,
) -> None:
    redis_server.kill()
    backend = RedisBackend(redis_client_factory(redis_server.url, timeout=1.0), node="n-b")
    with pytest.raises(BackendUnavailable):
        await backend.start(ignore)


async def test_queued_publishes_fail_when_the_backend_closes(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_client_factory(redis_server.url), node="n-c")
    await backend.start(ignore)
    redis_server.kill()
    pending = [backend.publish("lobby", "s-1", str(i).encode()) for i in range(10)]

    await backend.close()

    results = await asyncio.gather(*pending, return_exceptions=True)
    assert all(isinstance(result, BackendUnavailable) for result in results), results


async def test_close_settles_publishes_in_flight_and_returns(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_client_factory(redis_server.url), node="n-d")
    await backend.start(ignore)
    pending = [backend.publish("lobby", "s-1", str(i).encode()) for i in range(10)]

    closing = asyncio.ensure_future(backend.close())
    done, _ = await asyncio.wait([closing], timeout=2)
    if not done:
        # Clean up what the hung close left: a second cancel reaches the loop.
        await backend.close()
        await closing

    assert done, "close() did not return"
    assert all(future.done() for future in pending), "a publish future never settled"
