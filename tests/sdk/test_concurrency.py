"""Many requests in flight at once, from several tasks, each matched to its
reply; one task's messages arrive in the order it said them (PROTOCOL.md,
"Semantics": order). Run against a memory node and a Redis node."""

from __future__ import annotations

import asyncio
from typing import Any

from roomcast_client import decode_body
from tests.sdk.conftest import SdkFactory, next_message
from tests.support.processes import BrokerProcess

TASKS = 8
PER_TASK = 50


async def test_concurrent_says_from_several_tasks_are_acked_and_ordered_per_task(
    node: BrokerProcess, sdk: SdkFactory
) -> None:
    sender, receiver = await sdk(node.url), await sdk(node.url)
    await receiver.join("busy")
    await sender.join("busy")

    async def speak(task: int) -> None:
        for i in range(PER_TASK):
            await sender.say("busy", [task, i])

    async with asyncio.timeout(20):
        await asyncio.gather(*(speak(t) for t in range(TASKS)))
        bodies: list[Any] = []
        while len(bodies) < TASKS * PER_TASK:
            bodies.append(decode_body(await next_message(receiver)))

    for task in range(TASKS):
        assert [i for t, i in bodies if t == task] == list(range(PER_TASK))
    assert sender.stats()["pending"] == 0


async def test_many_requests_in_flight_each_get_their_own_reply(
    node: BrokerProcess, sdk: SdkFactory
) -> None:
    client = await sdk(node.url)
    rooms = [f"r{i}" for i in range(50)]

    async with asyncio.timeout(20):
        await asyncio.gather(*(client.join(room) for room in rooms))
        outcomes = await asyncio.gather(
            *(client.say(room, i) for i, room in enumerate(rooms)),
            *(client.say(f"not-{room}", 0) for room in rooms),
            return_exceptions=True,
        )

    # Each room's first message: offset 1 (HISTORY-PRESENCE.md, "Positions").
    assert [getattr(o, "offset", o) for o in outcomes[:50]] == [1] * 50
    assert [getattr(o, "code", None) for o in outcomes[50:]] == ["not_member"] * 50
    assert client.rooms == set(rooms)
