"""Token lifetime on an open connection (docs/PROTOCOL-ADDITIONS.md,
"refresh"): at ``exp`` the server closes with 1008 unless a ``refresh``
brought a later one."""

from __future__ import annotations

import asyncio
import time

from tests.conftest import ClientFactory
from tests.security.tokens import hs256
from tests.support.processes import BrokerProcess


async def test_connection_is_closed_with_1008_at_the_token_exp(
    secured: BrokerProcess, wire: ClientFactory
) -> None:
    client = await wire(f"{secured.url}?token={hs256(exp_in=1)}")

    await client.wait_closed(timeout=5)

    assert (client.ws.close_code, client.ws.close_reason) == (1008, "token expired")


async def test_refresh_keeps_the_connection_open_past_the_old_exp(
    secured: BrokerProcess, wire: ClientFactory
) -> None:
    old = hs256(sub="alice", exp_in=2)
    client = await wire(f"{secured.url}?token={old}")
    reply = await client.request("refresh", token=hs256(sub="alice", exp_in=300))
    assert reply["type"] == "ok"

    # Showing an absence (no close) needs the old exp to pass.
    await asyncio.sleep(max(0.0, int(time.time()) + 3 - time.time()))

    assert (await client.request("ping"))["type"] == "pong"


async def test_refresh_with_an_expired_token_is_unauthorized(
    secured: BrokerProcess, wire: ClientFactory
) -> None:
    client = await wire(f"{secured.url}?token={hs256()}")
    reply = await client.request("refresh", token=hs256(exp_in=-120))
    assert (reply["type"], reply["code"], reply["message"]) == (
        "error",
        "unauthorized",
        "token expired",
    )


async def test_refresh_for_another_user_is_unauthorized(
    secured: BrokerProcess, wire: ClientFactory
) -> None:
    client = await wire(f"{secured.url}?token={hs256(sub='alice')}")
    reply = await client.request("refresh", token=hs256(sub="mallory"))
    assert (reply["type"], reply["code"]) == ("error", "unauthorized")
