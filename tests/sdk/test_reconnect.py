"""Resilience: the client reconnects after its node goes away, re-joins its
rooms, says so with ``Reconnected``, and never leaves a request hanging.

Close-code rules (PROTOCOL.md, "Semantics": on shutdown 1001, reconnect
elsewhere): 1001 reconnects at once, other drops back off, 1003 and 1008
end the client, as does a client whose reconnecting is off or gives up.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from roomcast_client import (
    Client,
    ClientClosed,
    ConnectionLost,
    Disconnected,
    Event,
    Reconnect,
    Reconnected,
    RequestTimeout,
    decode_body,
)
from tests.conftest import BrokerFactory
from tests.sdk.conftest import Restarter, SdkFactory, next_message
from tests.support.processes import BrokerProcess, RedisServer

FAST = Reconnect(initial_delay=0.05, max_delay=0.3)


async def _next_lifecycle(client: Client, timeout: float = 10.0) -> Event:
    """The next Disconnected or Reconnected, skipping room events."""
    async with asyncio.timeout(timeout):
        while not isinstance(event := await client.receive(), Disconnected | Reconnected):
            pass
    return event


async def test_going_away_reconnects_at_once_to_the_next_node(
    broker: BrokerFactory, sdk: SdkFactory
) -> None:
    first, second = broker("--node-id", "n-first"), broker("--node-id", "n-second")
    # A backoff pause would be drawn from [0, 1 h]: only an immediate retry is quick.
    client = await sdk([first.url, second.url], reconnect=Reconnect(initial_delay=3600))
    await client.join("lobby")
    old_session = client.session

    assert await asyncio.to_thread(first.terminate) == 0
    started = time.monotonic()

    gone = await _next_lifecycle(client)
    assert isinstance(gone, Disconnected)
    assert gone == Disconnected(1001, gone.reason, reconnecting=True)
    back = await _next_lifecycle(client, timeout=5)
    assert time.monotonic() - started < 5
    assert isinstance(back, Reconnected)
    assert (back.node, back.rooms, dict(back.failed)) == ("n-second", ("lobby",), {})
    assert back.session == client.session != old_session
    assert client.node == "n-second"


async def test_killed_node_restarted_on_its_port_gets_rooms_rejoined_and_messages_flow(
    broker: BrokerFactory, sdk: SdkFactory, restart: Restarter
) -> None:
    node = broker()
    client = await sdk(node.url, reconnect=FAST)
    await client.join("lobby")
    await client.join("kitchen")

    node.kill()
    gone = await _next_lifecycle(client)
    assert isinstance(gone, Disconnected)
    assert gone == Disconnected(1006, "", reconnecting=True)
    again = await restart(node)
    back = await _next_lifecycle(client)

    assert isinstance(back, Reconnected)
    assert back.rooms == ("kitchen", "lobby")
    assert client.rooms == {"kitchen", "lobby"}
    other = await sdk(again.url)
    await other.join("lobby")
    await other.say("lobby", "welcome back")
    message = await asyncio.wait_for(next_message(client), 5)
    assert decode_body(message) == "welcome back"
    await client.say("kitchen", "and the kitchen?")  # a member again: no not_member


async def test_requests_issued_while_down_succeed_after_reconnect_or_time_out_clearly(
    broker: BrokerFactory, sdk: SdkFactory, restart: Restarter
) -> None:
    node = broker()
    client = await sdk(node.url, reconnect=FAST, request_timeout=30)
    await client.join("lobby")
    node.kill()
    await _next_lifecycle(client)

    patient = asyncio.create_task(client.say("lobby", "sent after the restart"))
    impatient = asyncio.create_task(client.ping(timeout=0.3))
    started = time.monotonic()
    with pytest.raises(RequestTimeout, match="no connection"):
        await impatient
    assert time.monotonic() - started < 3
    assert not patient.done()

    await restart(node)

    await asyncio.wait_for(patient, 15)
    assert client.stats()["pending"] == 0


async def test_reconnect_off_ends_the_client_with_a_last_disconnected(
    broker: BrokerFactory, sdk: SdkFactory
) -> None:
    node = broker()
    client = await sdk(node.url, reconnect=False)
    await client.join("lobby")

    node.kill()

    assert await _next_lifecycle(client) == Disconnected(1006, "", reconnecting=False)
    with pytest.raises(ClientClosed) as caught:
        await asyncio.wait_for(client.receive(), 5)
    assert caught.value.code == 1006
    with pytest.raises(ClientClosed):
        await client.say("lobby", "anyone?")
    assert not client.connected


async def test_iteration_raises_when_the_client_ends_on_its_own(
    broker: BrokerFactory, sdk: SdkFactory
) -> None:
    node = broker()
    client = await sdk(node.url, reconnect=False)

    async def consume() -> list[Event]:
        return [event async for event in client]

    consuming = asyncio.create_task(consume())
    await asyncio.to_thread(node.terminate)

    with pytest.raises(ClientClosed):
        await asyncio.wait_for(consuming, 10)


async def test_unsupported_data_close_ends_the_client(node: BrokerProcess, sdk: SdkFactory) -> None:
    client = await sdk(node.url, reconnect=FAST)
    # The SDK never sends binary frames; send one underneath it to get 1003.
    ws = client._supervisor.connection
    assert ws is not None
    await ws.send(b"\x00")

    gone = await _next_lifecycle(client)
    assert isinstance(gone, Disconnected)
    assert gone == Disconnected(1003, gone.reason, reconnecting=False)
    with pytest.raises(ClientClosed) as caught:
        await client.ping()
    assert caught.value.code == 1003


async def test_client_gives_up_after_max_attempts(broker: BrokerFactory, sdk: SdkFactory) -> None:
    node = broker()
    client = await sdk(node.url, reconnect=Reconnect(0.01, 0.02, max_attempts=3))

    node.kill()

    assert await _next_lifecycle(client) == Disconnected(1006, "", reconnecting=True)
    last = await _next_lifecycle(client)
    assert isinstance(last, Disconnected)
    assert not last.reconnecting
    assert "gave up reconnecting after 3 attempts" in last.reason
    with pytest.raises(ClientClosed, match="gave up"):
        await client.join("lobby")


async def test_room_that_cannot_be_rejoined_is_reported_and_dropped(
    broker: BrokerFactory, sdk: SdkFactory, restart: Restarter
) -> None:
    node = broker()
    client = await sdk(node.url, reconnect=FAST)
    await client.join("a")
    await client.join("b")
    node.kill()
    await _next_lifecycle(client)

    await restart(node, "--max-rooms-per-session", "1")
    back = await _next_lifecycle(client)

    assert isinstance(back, Reconnected)
    assert back.rooms == ("a",)
    assert {room: error.code for room, error in back.failed.items()} == {"b": "too_many_rooms"}
    assert client.rooms == {"a"}


async def test_requests_in_flight_when_the_connection_drops_fail_at_once_but_leave_holds(
    broker: BrokerFactory, sdk: SdkFactory
) -> None:
    node = broker()
    client = await sdk(node.url, reconnect=FAST, request_timeout=30)
    await client.join("a")
    await client.join("b")
    assert node.process is not None
    node.process.send_signal(signal.SIGSTOP)  # requests reach it, replies never come

    say = asyncio.create_task(client.say("a", "lost?"))
    leave = asyncio.create_task(client.leave("b"))
    for _ in range(100):  # until both are written (their first suspension)
        if client.stats()["pending"] == 2:
            break
        await asyncio.sleep(0)
    node.kill()

    started = time.monotonic()
    with pytest.raises(ConnectionLost):
        await asyncio.wait_for(say, 10)
    # A disconnected session has left every room: the leave did happen.
    await asyncio.wait_for(leave, 10)
    assert time.monotonic() - started < 10
    assert client.rooms == {"a"}


@pytest.mark.redis
async def test_cluster_client_moves_to_another_node_and_keeps_talking(
    broker: BrokerFactory, sdk: SdkFactory, shared_redis: RedisServer, namespace: str
) -> None:
    cluster = ("--redis-url", shared_redis.url, "--namespace", namespace)
    first = broker(*cluster, "--node-id", "n-a")
    second = broker(*cluster, "--node-id", "n-b")
    mover = await sdk([first.url, second.url], reconnect=FAST)
    stayer = await sdk(second.url)
    await stayer.join("lobby")
    await mover.join("lobby")

    first.kill()

    assert isinstance(await _next_lifecycle(mover), Disconnected)
    back = await _next_lifecycle(mover)
    assert isinstance(back, Reconnected)
    assert back.node == "n-b"
    await mover.say("lobby", "from the mover")
    await stayer.say("lobby", "from the stayer")
    heard_by_stayer = await asyncio.wait_for(next_message(stayer), 5)
    heard_by_mover = await asyncio.wait_for(next_message(mover), 5)
    assert (heard_by_stayer.from_, decode_body(heard_by_stayer)) == (
        mover.session,
        "from the mover",
    )
    assert decode_body(heard_by_mover) == "from the stayer"
