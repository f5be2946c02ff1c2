"""The SDK on a node that requires tokens (docs/PROTOCOL-ADDITIONS.md):
the token opens the session, refusals raise ``Forbidden``/``Unauthorized``,
an expired token's 1008 ends the client, and a refreshed token is the one
reconnects present."""

from __future__ import annotations

import asyncio

import pytest

from roomcast_client import (
    ClientClosed,
    ConnectFailed,
    Disconnected,
    Forbidden,
    Reconnect,
    Reconnected,
    Unauthorized,
    connect,
)
from tests.conftest import BrokerFactory
from tests.sdk.conftest import Restarter, SdkFactory
from tests.security.tokens import SECRET, hs256, rooms
from tests.support.processes import BrokerProcess

FAST = Reconnect(initial_delay=0.05, max_delay=0.3)


@pytest.fixture
def secured(broker: BrokerFactory) -> BrokerProcess:
    """A memory node that requires HS256 tokens."""
    return broker("--jwt-secret", SECRET)


async def test_token_opens_a_session_as_its_user(secured: BrokerProcess, sdk: SdkFactory) -> None:
    client = await sdk(secured.url, token=hs256(sub="alice"))

    assert client.user == "alice"
    await client.join("lobby")


async def test_anonymous_session_has_no_user(broker: BrokerFactory, sdk: SdkFactory) -> None:
    client = await sdk(broker().url)

    assert client.user is None


async def test_missing_token_fails_to_connect(secured: BrokerProcess) -> None:
    with pytest.raises(ConnectFailed, match="401"):
        await connect(secured.url, open_timeout=5)


async def test_refused_handshake_carries_the_status_and_the_brokers_reason(
    secured: BrokerProcess,
) -> None:
    with pytest.raises(ConnectFailed) as caught:
        await connect(secured.url, open_timeout=5)

    assert (caught.value.status, caught.value.reason) == (401, "a token is required")
    assert "a token is required" in str(caught.value)


async def test_refusal_of_an_invalid_token_says_why(secured: BrokerProcess) -> None:
    forged = hs256(key=SECRET[::-1])

    with pytest.raises(ConnectFailed) as caught:
        await connect(secured.url, token=forged, open_timeout=5)

    assert (caught.value.status, caught.value.reason) == (401, "bad token signature")


async def test_a_node_that_is_down_is_not_a_refusal(secured: BrokerProcess) -> None:
    secured.kill()

    with pytest.raises(ConnectFailed) as caught:
        await connect(secured.url, open_timeout=5)

    assert (caught.value.status, caught.value.reason) == (None, None)


async def test_join_not_granted_raises_forbidden(secured: BrokerProcess, sdk: SdkFactory) -> None:
    client = await sdk(secured.url, token=hs256(rooms=rooms(("lobby", "join"))))

    with pytest.raises(Forbidden) as caught:
        await client.join("kitchen")

    assert caught.value.code == "forbidden"


async def test_say_without_the_right_raises_forbidden(
    secured: BrokerProcess, sdk: SdkFactory
) -> None:
    client = await sdk(secured.url, token=hs256(rooms=rooms(("lobby", "join"))))
    await client.join("lobby")

    with pytest.raises(Forbidden):
        await client.say("lobby", "hello?")


async def test_refresh_with_another_users_token_raises_unauthorized(
    secured: BrokerProcess, sdk: SdkFactory
) -> None:
    client = await sdk(secured.url, token=hs256(sub="alice"))

    with pytest.raises(Unauthorized):
        await client.refresh(hs256(sub="mallory"))


async def test_token_expiry_closes_with_1008_and_ends_the_client(
    secured: BrokerProcess, sdk: SdkFactory
) -> None:
    client = await sdk(secured.url, token=hs256(exp_in=1), reconnect=FAST)

    gone = await asyncio.wait_for(client.receive(), 10)

    assert isinstance(gone, Disconnected)
    assert gone == Disconnected(1008, gone.reason, reconnecting=False)
    with pytest.raises(ClientClosed) as caught:
        await client.receive()
    assert caught.value.code == 1008


async def test_reconnect_presents_the_refreshed_token(
    secured: BrokerProcess, sdk: SdkFactory, restart: Restarter
) -> None:
    client = await sdk(secured.url, token=hs256(rooms=rooms(("lobby", "join"))), reconnect=FAST)
    await client.refresh(hs256(rooms=rooms(("*", "join say"))))

    secured.kill()
    await restart(secured)

    assert isinstance(await asyncio.wait_for(client.receive(), 10), Disconnected)
    assert isinstance(await asyncio.wait_for(client.receive(), 10), Reconnected)
    await client.join("kitchen")  # granted by the refreshed token only


async def test_handshake_refused_on_reconnect_ends_the_client(
    secured: BrokerProcess, sdk: SdkFactory, restart: Restarter
) -> None:
    client = await sdk(secured.url, token=hs256(), reconnect=FAST)

    secured.kill()
    await restart(secured, f"--jwt-secret={SECRET[::-1]}")  # the old token no longer verifies

    assert await asyncio.wait_for(client.receive(), 10) == Disconnected(1006, "", True)
    last = await asyncio.wait_for(client.receive(), 10)
    assert isinstance(last, Disconnected)
    assert not last.reconnecting
    assert "HTTP 401" in last.reason
    assert "bad token signature" in last.reason  # the broker's own reason
    with pytest.raises(ClientClosed):
        await client.ping()
