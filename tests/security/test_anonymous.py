"""Anonymous mode, the default: no token asked for, every room open, and
frames byte-identical to protocol v1 (no ``user`` field anywhere)."""

from __future__ import annotations

import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.security.conftest import post
from tests.security.tokens import hs256
from tests.support.processes import BrokerProcess


async def frame(ws: ClientConnection) -> str:
    raw = await ws.recv()
    assert isinstance(raw, str)
    return raw


def v1(**fields: Any) -> str:
    """A frame as protocol v1 writes it: compact JSON, fields in contract order."""
    return json.dumps(fields, separators=(",", ":"))


async def test_anonymous_frames_are_exactly_those_of_protocol_v1(
    anonymous_v1: BrokerProcess,
) -> None:
    # Without history (--history-size 0) frames carry no positions: byte for
    # byte what PROTOCOL.md describes.
    async with connect(anonymous_v1.url) as alice, connect(anonymous_v1.url) as bob:
        await frame(alice)
        welcome = await frame(bob)
        sid, node = json.loads(welcome)["session"], json.loads(welcome)["node"]
        assert welcome == v1(type="welcome", session=sid, node=node, protocol=1)
        await alice.send(v1(type="join", room="plain", ref=1))
        assert await frame(alice) == v1(type="ok", ref=1)
        await bob.send(v1(type="join", room="plain"))
        assert await frame(alice) == v1(type="joined", room="plain", session=sid)

        await bob.send(v1(type="say", room="plain", body={"x": 1}))
        message = v1(type="message", room="plain", **{"from": sid}, body={"x": 1})
        assert await frame(alice) == message

        await bob.send(v1(type="leave", room="plain"))
        assert await frame(alice) == v1(type="left", room="plain", session=sid)


async def test_anonymous_node_ignores_a_token_and_opens_any_room(
    anonymous: BrokerProcess,
) -> None:
    async with connect(f"{anonymous.url}?token={hs256(sub='ignored')}") as ws:
        assert "user" not in json.loads(await frame(ws))
        await ws.send(v1(type="join", room="team:420", ref=1))
        ok = json.loads(await frame(ws))
        assert (ok["type"], ok["ref"]) == ("ok", 1)
        assert "user" not in ok


async def test_refresh_on_an_anonymous_node_is_unauthorized(anonymous: BrokerProcess) -> None:
    async with connect(anonymous.url) as ws:
        await frame(ws)
        await ws.send(v1(type="refresh", token=hs256(), ref=1))
        reply = json.loads(await frame(ws))
        assert (reply["type"], reply["code"]) == ("error", "unauthorized")


def test_publish_api_is_off_without_an_api_key(anonymous: BrokerProcess) -> None:
    status, _, _ = post(anonymous.http + "/publish", b'{"room":"r","body":1}')
    assert status == 404
