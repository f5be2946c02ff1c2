"""Fixtures of the SDK tests: broker nodes (memory and Redis), SDK clients
that are closed at the end, and restarting a killed node on its port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from roomcast_client import Client, Disconnected, Message, Reconnected, connect
from tests.conftest import BrokerFactory
from tests.support.processes import BrokerProcess, RedisServer


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend_args(request: pytest.FixtureRequest, namespace: str) -> tuple[str, ...]:
    """``broker serve`` arguments for each backend: in-memory, or a shared Redis."""
    if request.param == "memory":
        return ()
    redis: RedisServer = request.getfixturevalue("shared_redis")
    return ("--redis-url", redis.url, "--namespace", namespace)


@pytest.fixture
def node(broker: BrokerFactory, backend_args: tuple[str, ...]) -> BrokerProcess:
    """One broker node, once per backend."""
    return broker(*backend_args)


SdkFactory = Callable[..., Awaitable[Client]]


@pytest.fixture
async def sdk() -> AsyncIterator[SdkFactory]:
    """Open SDK clients: ``await sdk(url, **connect_options)``; all closed at the end."""
    opened: list[Client] = []

    async def open_client(url: str | list[str], **options: Any) -> Client:
        client = await connect(url, **options)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        await client.close()


Restarter = Callable[..., Awaitable[BrokerProcess]]


@pytest.fixture
def restart() -> Iterator[Restarter]:
    """Start a stopped node again on its port: ``await restart(node, *extra_args)``."""
    started: list[BrokerProcess] = []

    async def start_again(node: BrokerProcess, *extra_args: str) -> BrokerProcess:
        again = BrokerProcess(args=(*node.args, *extra_args), port=node.port, env=node.env)
        started.append(again)
        return await asyncio.to_thread(again.start)

    yield start_again
    for again in started:
        again.cleanup()


async def next_message(client: Client) -> Message:
    """The client's next message, skipping membership events."""
    while not isinstance(event := await client.receive(), Message):
        pass
    return event


async def next_lifecycle(client: Client, timeout: float = 10.0) -> Disconnected | Reconnected:
    """The client's next Disconnected or Reconnected, skipping room events."""
    async with asyncio.timeout(timeout):
        while not isinstance(event := await client.receive(), Disconnected | Reconnected):
            pass
    return event
