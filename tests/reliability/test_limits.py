"""Every configurable limit, as a client meets it (README, "Configuration"
and "Failure modes")."""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conftest import BrokerFactory, ClientFactory
from tests.reliability.observe import eventually, scrape


async def test_handshake_beyond_max_connections_is_refused_with_503(
    broker: BrokerFactory, wire: ClientFactory
) -> None:
    node = broker("--max-connections", "2")
    await wire(node.url)
    await wire(node.url)

    with pytest.raises(InvalidStatus) as refused:
        await connect(node.url)

    assert refused.value.response.status_code == 503
    assert scrape(node).value("roomcast_connections_refused_total") == 1


async def test_connection_slot_freed_by_a_disconnect_is_usable_again(
    broker: BrokerFactory, wire: ClientFactory
) -> None:
    node = broker("--max-connections", "1")
    first = await wire(node.url)
    await first.close()
    await eventually(lambda: scrape(node).value("roomcast_connections_open") == 0, timeout=5)

    second = await wire(node.url)

    assert second.welcome["type"] == "welcome"


async def test_join_beyond_max_rooms_per_session_is_too_many_rooms(
    broker: BrokerFactory, wire: ClientFactory
) -> None:
    client = await wire(broker("--max-rooms-per-session", "2").url)
    await client.join("one")
    await client.join("two")

    reply = await client.request("join", room="three")

    assert (reply["type"], reply["code"]) == ("error", "too_many_rooms")
    await client.request("ping")  # the connection stays open


async def test_frame_beyond_max_message_size_closes_with_1009(
    broker: BrokerFactory, wire: ClientFactory
) -> None:
    client = await wire(broker("--max-message-size", "1024").url)
    await client.join("big")

    await client.send_raw('{"type":"say","room":"big","body":"' + "x" * 2000 + '"}')

    await client.wait_closed()
    assert client.ws.close_code == 1009


async def test_says_beyond_rate_and_burst_are_rate_limited(
    broker: BrokerFactory, wire: ClientFactory
) -> None:
    client = await wire(broker("--say-rate", "10", "--say-burst", "5").url)
    await client.join("fast")

    replies = await asyncio.gather(*(client.request("say", room="fast", body=n) for n in range(20)))

    codes = [reply.get("code", reply["type"]) for reply in replies]
    assert codes[:5] == ["ok"] * 5
    assert set(codes[5:]) <= {"ok", "rate_limited"}
    assert codes.count("rate_limited") >= 10


async def test_default_limits_allow_1500_says_in_a_second_from_one_session(
    broker: BrokerFactory, wire: ClientFactory
) -> None:
    client = await wire(broker().url)
    await client.join("busy")
    started = time.monotonic()

    requests = []
    for tick in range(10):  # 150 says every 0.1 s, pipelined
        requests += [
            asyncio.create_task(client.request("say", room="busy", body=n))
            for n in range(tick * 150, (tick + 1) * 150)
        ]
        await asyncio.sleep(0.1)  # the pace of the sender
    replies = await asyncio.gather(*requests)

    assert time.monotonic() - started < 3.0
    codes = [reply.get("code", reply["type"]) for reply in replies]
    assert codes == ["ok"] * 1500


async def test_tcp_client_that_never_sends_the_handshake_is_disconnected(
    broker: BrokerFactory,
) -> None:
    node = broker("--handshake-timeout", "1")
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    started = time.monotonic()
    try:
        data = await asyncio.wait_for(reader.read(), timeout=5)
    finally:
        writer.close()
        await writer.wait_closed()

    took = time.monotonic() - started
    assert 0.5 < took < 4.0, took
    assert b"101" not in data  # no upgrade, whatever error text came before EOF


async def test_session_that_never_joins_is_closed_with_1008(
    broker: BrokerFactory, wire: ClientFactory
) -> None:
    client = await wire(broker("--idle-timeout", "1").url)

    await client.wait_closed(timeout=5)

    assert client.ws.close_code == 1008


async def test_session_that_joined_is_not_closed_for_idleness(
    broker: BrokerFactory, wire: ClientFactory
) -> None:
    client = await wire(broker("--idle-timeout", "1").url)
    await client.join("quiet")

    await asyncio.sleep(2.0)  # twice the idle timeout: show that nothing happens

    assert (await client.request("ping"))["type"] == "pong"
