"""RedisBackend against a real redis-server that fails: a publish Redis did
not take fails with BackendUnavailable, so the node can answer ``unavailable``
(PROTOCOL.md, "Error codes")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence

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


# --- credentials: one line that says which (issue 11) ------------------------

PASSWORD = "backend-test-password-1234"


@pytest.fixture
def locked_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own that requires ``PASSWORD``."""
    server = RedisServer(extra_args=("--requirepass", PASSWORD)).start()
    yield server
    server.kill()


async def start_error(url: str) -> str:
    """The message of the BackendUnavailable that ``start`` raises for ``url``."""
    backend = RedisBackend(redis_client_factory(url, timeout=1.0), node="n-e")
    with pytest.raises(BackendUnavailable) as failure:
        await backend.start(ignore)
    message = str(failure.value)
    assert "\n" not in message
    return message


async def test_a_wrong_password_is_an_authentication_failure_naming_the_user(
    locked_redis: RedisServer,
) -> None:
    message = await start_error(f"redis://app:not-{PASSWORD}@127.0.0.1:{locked_redis.port}/0")

    assert message.startswith(
        f"Redis authentication failed at redis://127.0.0.1:{locked_redis.port} for user 'app'"
    )
    assert "WRONGPASS" in message
    assert PASSWORD not in message


async def test_no_password_for_a_redis_that_requires_one_says_so(
    locked_redis: RedisServer,
) -> None:
    message = await start_error(locked_redis.url)

    assert message.startswith(
        f"Redis authentication failed at redis://127.0.0.1:{locked_redis.port}"
    )
    assert "NOAUTH" in message


async def test_a_user_denied_a_command_at_start_is_named_with_noperm(
    redis_server: RedisServer,
) -> None:
    redis_server.cli("ACL", "SETUSER", "noping", "on", f">{PASSWORD}", "+@all", "-ping")

    message = await start_error(f"redis://noping:{PASSWORD}@127.0.0.1:{redis_server.port}/0")

    assert message.startswith(
        f"Redis at redis://127.0.0.1:{redis_server.port} refused user 'noping'"
    )
    assert "NOPERM" in message


async def test_an_unreachable_redis_is_named_with_the_os_error(redis_server: RedisServer) -> None:
    redis_server.kill()

    message = await start_error(redis_server.url)

    assert message == (
        f"cannot reach Redis at redis://127.0.0.1:{redis_server.port}: "
        "[Errno 111] Connection refused"
    )


async def test_a_user_who_may_not_spublish_is_started_but_never_healthy(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    redis_server.cli(
        "ACL", "SETUSER", "nopub", "on", f">{PASSWORD}", "~*", "&*", "+@all", "-spublish"
    )
    url = f"redis://nopub:{PASSWORD}@127.0.0.1:{redis_server.port}/0"
    backend = RedisBackend(redis_client_factory(url), node="n-f", canary_timeout=0.5)

    await backend.start(ignore)  # waits up to canary_timeout for a canary
    try:
        assert not backend.healthy()
    finally:
        await backend.close()
    assert "canary publish failed (NoPermissionError (NOPERM)" in caplog.text
