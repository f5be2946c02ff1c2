"""The Redis publisher settles each command from its own reply."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest

from broker.backends.base import BackendUnavailable
from broker.backends.redis.publisher import Publisher


async def test_a_refused_command_fails_alone_and_the_publish_beside_it_succeeds() -> None:
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    await client.set("a-string", "x")
    publisher = Publisher(client)
    loop = asyncio.get_running_loop()
    published, refused = loop.create_future(), loop.create_future()
    publisher.enqueue((b"SPUBLISH", b"room", b"payload"), published)
    publisher.enqueue((b"HSET", b"a-string", b"field", b"value"), refused)  # WRONGTYPE
    runner = loop.create_task(publisher.run())
    try:
        await asyncio.wait_for(published, 5)
        with pytest.raises(BackendUnavailable):
            await asyncio.wait_for(refused, 5)
        assert publisher.up
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await client.aclose()
