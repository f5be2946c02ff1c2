"""Recovery across reconnects (docs/HISTORY-PRESENCE.md, "Recovery"): a
client whose node dies re-joins its rooms from its positions, gets what was
said meanwhile as ordinary messages, in order, before live ones, none twice,
and ``Reconnected`` says per room whether nothing was lost.

The client's node is frozen (SIGSTOP) before the messages it must recover
are said, so that none can reach it live; SIGKILL then ends its connection.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from roomcast_client import Client, Disconnected, Message, Position, Reconnect, Reconnected
from tests.conftest import BrokerFactory
from tests.sdk.conftest import Restarter, SdkFactory, next_lifecycle, next_message
from tests.support.processes import BrokerProcess, RedisServer

pytestmark = pytest.mark.redis

FAST = Reconnect(initial_delay=0.05, max_delay=0.3)


def _freeze(node: BrokerProcess) -> None:
    assert node.process is not None
    node.process.send_signal(signal.SIGSTOP)


async def _reconnected(client: Client) -> Reconnected:
    assert isinstance(await next_lifecycle(client), Disconnected)
    back = await next_lifecycle(client)
    assert isinstance(back, Reconnected)
    return back


async def _offsets_until(client: Client, room: str, last: int) -> list[int]:
    """Offsets of ``room``'s messages the client reads, up to ``last``."""
    seen: list[int] = []
    async with asyncio.timeout(10):
        while not seen or seen[-1] < last:
            message = await next_message(client)
            if message.room == room and isinstance(message.offset, int):
                seen.append(message.offset)
    return seen


async def _say(client: Client, room: str, count: int) -> None:
    for i in range(count):
        await client.say(room, i)


@pytest.fixture
def cluster(broker: BrokerFactory, shared_redis: RedisServer, namespace: str) -> tuple[str, ...]:
    """``broker serve`` arguments of one cluster on the shared Redis."""
    return ("--redis-url", shared_redis.url, "--namespace", namespace)


async def test_client_of_a_killed_node_recovers_what_was_said_meanwhile_in_order(
    broker: BrokerFactory, sdk: SdkFactory, cluster: tuple[str, ...]
) -> None:
    doomed, survivor = broker(*cluster), broker(*cluster)
    mover = await sdk([doomed.url, survivor.url], reconnect=FAST)
    stayer = await sdk(survivor.url)
    await stayer.join("lobby")
    await mover.join("lobby")
    await _say(stayer, "lobby", 3)
    assert await _offsets_until(mover, "lobby", 3) == [1, 2, 3]

    _freeze(doomed)
    await _say(stayer, "lobby", 5)  # offsets 4..8, never delivered by the frozen node
    doomed.kill()
    back = await _reconnected(mover)
    await _say(stayer, "lobby", 2)  # 9..10, live

    assert back.recovered == {"lobby": True}
    assert await _offsets_until(mover, "lobby", 10) == list(range(4, 11))


async def test_recovered_position_counts_the_movers_own_says(
    broker: BrokerFactory, sdk: SdkFactory, cluster: tuple[str, ...]
) -> None:
    doomed, survivor = broker(*cluster), broker(*cluster)
    mover = await sdk([doomed.url, survivor.url], reconnect=FAST)
    stayer = await sdk(survivor.url)
    await stayer.join("lobby")
    await mover.join("lobby")
    own = await mover.say("lobby", "mine")  # offset 1: never delivered back to the mover

    _freeze(doomed)
    await _say(stayer, "lobby", 2)  # 2..3
    doomed.kill()
    back = await _reconnected(mover)

    assert own is not None and own.offset == 1
    assert back.recovered == {"lobby": True}
    assert await _offsets_until(mover, "lobby", 3) == [2, 3]
    assert mover.position("lobby") == Position(offset=3, epoch=own.epoch)


async def test_room_whose_history_overflowed_is_reported_not_recovered_and_others_recovered(
    broker: BrokerFactory, sdk: SdkFactory, cluster: tuple[str, ...]
) -> None:
    small = (*cluster, "--history-size", "5")
    doomed, survivor = broker(*small), broker(*small)
    mover = await sdk([doomed.url, survivor.url], reconnect=FAST)
    stayer = await sdk(survivor.url)
    for room in ("busy", "quiet"):
        await stayer.join(room)
        await mover.join(room)

    _freeze(doomed)
    await _say(stayer, "busy", 10)  # more than history keeps
    await _say(stayer, "quiet", 2)
    doomed.kill()
    back = await _reconnected(mover)

    assert back.recovered == {"busy": False, "quiet": True}
    assert back.not_recovered == ("busy",)
    assert await _offsets_until(mover, "quiet", 2) == [1, 2]


async def test_room_whose_history_was_flushed_is_reported_not_recovered(
    broker: BrokerFactory, sdk: SdkFactory, restart: Restarter, redis_server: RedisServer
) -> None:
    node = broker("--redis-url", redis_server.url)
    client = await sdk(node.url, reconnect=FAST)
    speaker = await sdk(node.url)
    await speaker.join("lobby")
    await client.join("lobby")
    await speaker.say("lobby", "before")
    assert await _offsets_until(client, "lobby", 1) == [1]
    old = client.position("lobby")

    node.kill()
    assert isinstance(await next_lifecycle(client), Disconnected)
    assert redis_server.cli("FLUSHALL") == "OK"
    await restart(node)
    back = await next_lifecycle(client)

    assert isinstance(back, Reconnected)
    assert back.recovered == {"lobby": False}
    now = client.position("lobby")
    assert old is not None and now is not None and now.epoch != old.epoch


async def test_messages_replayed_after_a_reconnect_are_ordinary_messages(
    broker: BrokerFactory, sdk: SdkFactory, cluster: tuple[str, ...]
) -> None:
    doomed, survivor = broker(*cluster), broker(*cluster)
    mover = await sdk([doomed.url, survivor.url], reconnect=FAST)
    stayer = await sdk(survivor.url)
    await stayer.join("lobby")
    await mover.join("lobby")

    _freeze(doomed)
    said = await stayer.say("lobby", {"text": "while away"})
    doomed.kill()
    await _reconnected(mover)

    replayed = await asyncio.wait_for(next_message(mover), 5)
    assert isinstance(replayed, Message)
    assert said is not None
    assert (replayed.from_, replayed.offset, replayed.epoch) == (
        stayer.session,
        said.offset,
        said.epoch,
    )
