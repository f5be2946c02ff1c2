"""Bad input over the wire (PROTOCOL.md, "Error codes" and "Transport"):
every error code reachable without credentials comes back as an ``error``
and the connection stays open; protocol violations close the connection
with their code; and none of it hurts the node or its other clients."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ClientFactory
from tests.support.processes import BrokerProcess
from tests.support.wire import Frame, WireClient

MAX_SIZE = 1024
MAX_ROOMS = 2


@pytest.fixture(scope="module")
def node() -> Iterator[BrokerProcess]:
    """One node with small limits, shared by this module's tests."""
    process = BrokerProcess(
        args=(
            "--max-message-size",
            str(MAX_SIZE),
            "--max-rooms-per-session",
            str(MAX_ROOMS),
            "--say-rate",
            "1",
            "--say-burst",
            "1",
        )
    )
    process.start()
    yield process
    process.cleanup()


@pytest.fixture
def room() -> str:
    """A room name no other test uses."""
    return "r-" + uuid.uuid4().hex[:12]


async def raw_request(client: WireClient, frame: str, ref: Any) -> Frame:
    """Send ``frame`` as it is and return the reply that carries ``ref``."""
    reply: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
    client.replies[ref] = reply
    await client.send_raw(frame)
    return await asyncio.wait_for(reply, 5)


async def assert_still_open(client: WireClient) -> None:
    """The connection still serves requests."""
    assert (await client.request("ping"))["type"] == "pong"


async def assert_node_serves(node: BrokerProcess, wire: ClientFactory, room: str) -> None:
    """Healthy, and two fresh clients can still talk through a room."""
    assert node.health()[0] == 200
    sender, receiver = await wire(node.url), await wire(node.url)
    await receiver.join(room + "-after")
    await sender.join(room + "-after")
    await sender.say(room + "-after", "still serving")
    await receiver.expect("joined", session=sender.session)
    await receiver.expect("message", body="still serving")


# --- errors that keep the connection open ----------------------------------------


@pytest.mark.parametrize("frame", ["{not json", "", '{"type":"ping"', "[1,2"])
async def test_malformed_json_is_bad_json_with_ref_null(
    node: BrokerProcess, wire: ClientFactory, frame: str
) -> None:
    client = await wire(node.url)
    await client.send_raw(frame)
    error = await client.expect("error", code="bad_json", ref=None)
    assert error["message"]
    await assert_still_open(client)


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ('{"type":"join","ref":1}', "room"),
        ('{"type":"say","room":"r","ref":1}', "body"),
        ('{"type":"join","room":7,"ref":1}', "room"),
        ('{"type":"shout","ref":1}', "type"),
        ('{"room":"r","ref":1}', "type"),
    ],
)
async def test_bad_request_is_bad_message_naming_the_field(
    node: BrokerProcess, wire: ClientFactory, frame: str, field: str
) -> None:
    client = await wire(node.url)
    error = await raw_request(client, frame, 1)
    assert (error["type"], error["code"]) == ("error", "bad_message")
    assert field in error["message"]
    await assert_still_open(client)


@pytest.mark.parametrize("frame", ["[]", '"join"', "42", "null"])
async def test_json_that_is_not_an_object_is_bad_message(
    node: BrokerProcess, wire: ClientFactory, frame: str
) -> None:
    client = await wire(node.url)
    await client.send_raw(frame)
    await client.expect("error", code="bad_message", ref=None)
    await assert_still_open(client)


async def test_ref_over_64_characters_is_bad_message_with_ref_null(
    node: BrokerProcess, wire: ClientFactory
) -> None:
    client = await wire(node.url)
    await client.send_raw(json.dumps({"type": "ping", "ref": "x" * 65}))
    await client.expect("error", code="bad_message", ref=None)
    await assert_still_open(client)


@pytest.mark.parametrize("bad", ["", "a b", "r" * 129, "café", "a/b", "x\n"])
async def test_bad_room_name_is_bad_room(
    node: BrokerProcess, wire: ClientFactory, bad: str
) -> None:
    client = await wire(node.url)
    error = await client.request("join", room=bad)
    assert (error["type"], error["code"]) == ("error", "bad_room")
    await assert_still_open(client)


async def test_leave_of_a_room_not_joined_is_not_member(
    node: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    client = await wire(node.url)
    assert (await client.request("leave", room=room))["code"] == "not_member"
    await assert_still_open(client)


async def test_say_to_a_room_not_joined_is_not_member(
    node: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    client = await wire(node.url)
    assert (await client.request("say", room=room, body=1))["code"] == "not_member"
    await assert_still_open(client)


async def test_join_beyond_the_room_limit_is_too_many_rooms(
    node: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    client = await wire(node.url)
    for i in range(MAX_ROOMS):
        await client.join(f"{room}-{i}")
    assert (await client.request("join", room=room))["code"] == "too_many_rooms"
    await assert_still_open(client)


async def test_say_faster_than_the_rate_is_rate_limited(
    node: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    client = await wire(node.url)
    await client.join(room)
    await client.say(room, "first")

    error = await client.request("say", room=room, body="too soon")

    assert (error["type"], error["code"]) == ("error", "rate_limited")
    await assert_still_open(client)


async def test_rate_limited_say_reaches_nobody(
    node: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    sender, receiver = await wire(node.url), await wire(node.url)
    await receiver.join(room)
    await sender.join(room)
    await receiver.expect("joined", session=sender.session)
    await sender.say(room, "first")
    await receiver.expect("message", body="first")

    await sender.request("say", room=room, body="too soon")

    await receiver.expect_silence()


async def test_a_frame_at_the_size_limit_is_accepted(
    node: BrokerProcess, wire: ClientFactory
) -> None:
    client = await wire(node.url)
    frame = '{"type":"ping","ref":1,"pad":""}'
    frame = frame.replace('""', '"' + "x" * (MAX_SIZE - len(frame)) + '"')
    assert len(frame.encode()) == MAX_SIZE
    assert await raw_request(client, frame, 1) == {"type": "pong", "ref": 1}


# --- violations that close the connection ----------------------------------------


async def test_binary_frame_closes_with_1003(node: BrokerProcess, wire: ClientFactory) -> None:
    client = await wire(node.url)
    await client.send_raw(b'{"type":"ping","ref":1}')
    await client.wait_closed()
    assert client.ws.close_code == 1003


async def test_frame_over_the_size_limit_closes_with_1009(
    node: BrokerProcess, wire: ClientFactory
) -> None:
    client = await wire(node.url)
    await client.send_raw(json.dumps({"type": "ping", "ref": 1, "pad": "x" * MAX_SIZE}))
    await client.wait_closed()
    assert client.ws.close_code == 1009


async def test_invalid_utf8_in_a_text_frame_closes_with_1007(
    node: BrokerProcess, wire: ClientFactory
) -> None:
    client = await wire(node.url)
    # text=True sends the bytes as a text frame without checking them.
    await client.ws.send(b'{"type":"ping","ref":"\xff\xfe"}', text=True)
    await client.wait_closed()
    assert client.ws.close_code == 1007


async def test_member_closed_for_a_violation_is_announced_left(
    node: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    watcher, offender = await wire(node.url), await wire(node.url)
    await watcher.join(room)
    await offender.join(room)
    await watcher.expect("joined", session=offender.session)

    await offender.send_raw(b"binary")

    await watcher.expect("left", room=room, session=offender.session)


# --- the node survives -----------------------------------------------------------


@pytest.mark.parametrize(
    "violation", ["binary", "too-big", "invalid-utf8", "garbage-burst"], ids=str
)
async def test_node_keeps_serving_after_a_violation(
    node: BrokerProcess, wire: ClientFactory, room: str, violation: str
) -> None:
    client = await wire(node.url)
    if violation == "binary":
        await client.send_raw(b"\x00\x01")
    elif violation == "too-big":
        await client.send_raw("x" * (MAX_SIZE * 4))
    elif violation == "invalid-utf8":
        await client.ws.send(b"\xc3\x28", text=True)
    else:
        for junk in ["{", "}", "[]", '{"type":null}', "\u0000", "{" * 200]:
            await client.send_raw(junk)
        await assert_still_open(client)
        return await assert_node_serves(node, wire, room)
    await client.wait_closed()
    await assert_node_serves(node, wire, room)


async def test_client_that_aborts_mid_request_leaves_the_node_serving(
    node: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    watcher = await wire(node.url)
    await watcher.join(room)
    quitter = await wire(node.url)

    await quitter.send_raw(json.dumps({"type": "join", "room": room, "ref": 1}))
    quitter.ws.transport.abort()

    # A later member's message marks the end of what the quitter could cause.
    sender = await wire(node.url)
    await sender.join(room)
    await sender.say(room, "marker")
    events = []
    while (frame := await watcher.next_event())["type"] != "message":
        events.append(frame)

    # The join may or may not have been read before the drop; either way the
    # quitter is no member now.
    about_quitter = [e["type"] for e in events if e.get("session") == quitter.session]
    assert about_quitter in ([], ["joined", "left"])
    await assert_node_serves(node, wire, room)


async def test_client_that_drops_before_the_handshake_ends_leaves_the_node_serving(
    node: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await assert_node_serves(node, wire, room)
