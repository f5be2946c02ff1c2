"""Fixtures: real redis-server and broker processes on free loopback ports.

Tests that need a real Redis are marked ``redis``. Without a ``redis-server``
binary they are skipped with a reason that tells how to enable them, unless
``ROOMCAST_REQUIRE_REDIS=1`` (set by ``.ci/run``), where that is an error.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from tests.support.processes import REDIS_SERVER, BrokerProcess, RedisServer
from tests.support.wire import WireClient

REQUIRE_REDIS = os.environ.get("ROOMCAST_REQUIRE_REDIS") == "1"
SKIP_REASON = "redis-server not installed: install it (apt-get install redis-server) to run this"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the ``redis`` tests on machines without redis-server (never in CI)."""
    if REDIS_SERVER is not None:
        return
    if REQUIRE_REDIS:
        raise pytest.UsageError("ROOMCAST_REQUIRE_REDIS=1 but redis-server is not installed")
    for item in items:
        if "redis" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.fixture(scope="session")
def shared_redis() -> Iterator[RedisServer]:
    """One redis-server for the session; tests isolate by namespace."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own (for fault injection)."""
    server = RedisServer().start()
    yield server
    server.kill()


@pytest.fixture
def namespace() -> str:
    """A Redis namespace no other test uses."""
    return "t" + uuid.uuid4().hex[:10]


BrokerFactory = Callable[..., BrokerProcess]


@pytest.fixture
def broker() -> Iterator[BrokerFactory]:
    """Start broker processes: ``broker("--redis-url", url, ...)``; all stopped at the end."""
    started: list[BrokerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> BrokerProcess:
        node = BrokerProcess(args=args, env=env or {})
        started.append(node)
        return node.start()

    yield start
    for node in started:
        node.cleanup()


ClientFactory = Callable[..., Awaitable[WireClient]]


@pytest.fixture
async def wire() -> AsyncIterator[ClientFactory]:
    """Open raw protocol clients: ``await wire(url)``; all closed at the end."""
    opened: list[WireClient] = []

    async def open_client(url: str, **kwargs: Any) -> WireClient:
        client = await WireClient.open(url, **kwargs)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        await client.close()
