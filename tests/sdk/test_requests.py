"""Every request resolves on its reply, and every error reachable without
credentials raises its typed exception (PROTOCOL.md, "Error codes").
Run against a memory node and a Redis node."""

from __future__ import annotations

import pytest

from roomcast_client import (
    BadRequest,
    ClientClosed,
    ConnectFailed,
    NotMember,
    RateLimited,
    TooManyRooms,
    connect,
)
from tests.conftest import BrokerFactory
from tests.sdk.conftest import SdkFactory
from tests.support.processes import BrokerProcess, free_port


async def test_welcome_gives_session_and_node(broker: BrokerFactory, sdk: SdkFactory) -> None:
    node = broker("--node-id", "n-welcome")

    client = await sdk(node.url)

    assert client.node == "n-welcome"
    assert client.session.startswith("s-")
    assert client.connected


async def test_join_and_leave_resolve_and_track_rooms(node: BrokerProcess, sdk: SdkFactory) -> None:
    client = await sdk(node.url)

    await client.join("a")
    await client.join("b")
    assert client.rooms == {"a", "b"}

    await client.leave("a")
    assert client.rooms == {"b"}


async def test_join_twice_succeeds(node: BrokerProcess, sdk: SdkFactory) -> None:
    client = await sdk(node.url)

    await client.join("again")
    await client.join("again")

    assert client.rooms == {"again"}


async def test_say_resolves_when_accepted(node: BrokerProcess, sdk: SdkFactory) -> None:
    client = await sdk(node.url)
    await client.join("lobby")

    await client.say("lobby", {"text": "hi"})


async def test_ping_returns_the_round_trip_time(node: BrokerProcess, sdk: SdkFactory) -> None:
    client = await sdk(node.url)

    rtt = await client.ping()

    assert 0.0 < rtt < 5.0


async def test_say_outside_a_room_raises_not_member(node: BrokerProcess, sdk: SdkFactory) -> None:
    client = await sdk(node.url)

    with pytest.raises(NotMember) as caught:
        await client.say("nope", "x")

    assert caught.value.code == "not_member"
    assert "nope" in caught.value.message


async def test_leave_outside_a_room_raises_not_member(node: BrokerProcess, sdk: SdkFactory) -> None:
    client = await sdk(node.url)

    with pytest.raises(NotMember):
        await client.leave("never-joined")


async def test_bad_room_name_raises_bad_request(node: BrokerProcess, sdk: SdkFactory) -> None:
    client = await sdk(node.url)

    with pytest.raises(BadRequest) as caught:
        await client.join("no spaces allowed")

    assert caught.value.code == "bad_room"
    assert client.rooms == frozenset()


async def test_error_keeps_the_client_usable(node: BrokerProcess, sdk: SdkFactory) -> None:
    client = await sdk(node.url)
    with pytest.raises(NotMember):
        await client.say("nope", "x")

    await client.join("fine")
    await client.say("fine", "x")


async def test_room_limit_raises_too_many_rooms(broker: BrokerFactory, sdk: SdkFactory) -> None:
    node = broker("--max-rooms-per-session", "2")
    client = await sdk(node.url)
    await client.join("one")
    await client.join("two")

    with pytest.raises(TooManyRooms) as caught:
        await client.join("three")

    assert caught.value.code == "too_many_rooms"
    assert client.rooms == {"one", "two"}


async def test_saying_too_fast_raises_rate_limited(broker: BrokerFactory, sdk: SdkFactory) -> None:
    node = broker("--say-rate", "1", "--say-burst", "1")
    client = await sdk(node.url)
    await client.join("fast")
    await client.say("fast", 1)

    with pytest.raises(RateLimited) as caught:
        await client.say("fast", 2)

    assert caught.value.code == "rate_limited"


async def test_unencodable_body_raises_type_error_before_sending(
    node: BrokerProcess, sdk: SdkFactory
) -> None:
    client = await sdk(node.url)
    await client.join("lobby")

    with pytest.raises(TypeError):
        await client.say("lobby", object())
    assert client.stats()["pending"] == 0


async def test_connecting_where_nothing_listens_raises_connect_failed() -> None:
    with pytest.raises(ConnectFailed):
        await connect(f"ws://127.0.0.1:{free_port()}/ws", open_timeout=2)


async def test_first_reachable_url_is_used(broker: BrokerFactory, sdk: SdkFactory) -> None:
    node = broker("--node-id", "n-second")

    client = await sdk([f"ws://127.0.0.1:{free_port()}/ws", node.url])

    assert client.node == "n-second"


async def test_closed_client_refuses_requests(node: BrokerProcess) -> None:
    client = await connect(node.url)
    await client.close()

    with pytest.raises(ClientClosed):
        await client.ping()
