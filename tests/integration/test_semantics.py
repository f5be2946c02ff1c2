"""Every rule of PROTOCOL.md's "Semantics" section, checked over the wire
against real broker processes: one node on the in-memory backend, and, where
a rule involves other members, three nodes on one real Redis with the
members spread over them.

The nodes are shared by the tests of this module (starting three processes
per test would cost more than the tests); every test uses rooms of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect

from tests.conftest import BrokerFactory, ClientFactory
from tests.support.processes import REPO, BrokerProcess, RedisServer, free_port, http_get
from tests.support.wire import WireClient

MAX_ROOMS = 3
QUICK_DRAIN = {"BROKER_DRAIN_SECONDS": "0.2"}  # so that a SIGTERM test takes no 5 s
TOPOLOGIES = ["one-node", pytest.param("redis-cluster", marks=pytest.mark.redis)]


def sent_by(session: str) -> dict[str, Any]:
    """The ``from`` field to expect (a Python keyword, so passed unpacked)."""
    return {"from": session}


Start = Callable[..., BrokerProcess]


def start_topology(kind: str, start: Start, request: pytest.FixtureRequest) -> list[BrokerProcess]:
    """One in-memory node, or three nodes on one real Redis."""
    limits = ("--max-rooms-per-session", str(MAX_ROOMS))
    if kind == "one-node":
        return [start(*limits, env=QUICK_DRAIN)]
    redis: RedisServer = request.getfixturevalue("shared_redis")
    namespace = "t" + uuid.uuid4().hex[:10]
    return [
        start(
            *("--redis-url", redis.url, "--namespace", namespace, "--node-id", f"n-{i}"),
            *limits,
            env=QUICK_DRAIN,
        )
        for i in range(3)
    ]


@pytest.fixture(scope="module")
def module_broker() -> Iterator[Start]:
    """Like the ``broker`` fixture, for nodes that live as long as this module."""
    started: list[BrokerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> BrokerProcess:
        process = BrokerProcess(args=args, env=env or {})
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.cleanup()


@pytest.fixture(scope="module", params=TOPOLOGIES)
def nodes(request: pytest.FixtureRequest, module_broker: Start) -> list[BrokerProcess]:
    """The shared nodes of one topology."""
    return start_topology(request.param, module_broker, request)


@pytest.fixture(scope="module")
def node(module_broker: Start) -> BrokerProcess:
    """One shared node on the in-memory backend."""
    return module_broker("--max-rooms-per-session", str(MAX_ROOMS))


@pytest.fixture(params=TOPOLOGIES)
def own_nodes(request: pytest.FixtureRequest, broker: BrokerFactory) -> list[BrokerProcess]:
    """Nodes of this test's own, for a test that stops them."""
    return start_topology(request.param, broker, request)


@pytest.fixture
def room() -> str:
    """A room name no other test uses."""
    return "r-" + uuid.uuid4().hex[:12]


async def connect(wire: ClientFactory, nodes: list[BrokerProcess], count: int) -> list[WireClient]:
    """``count`` clients, the i-th on node ``i % len(nodes)``."""
    return [await wire(nodes[i % len(nodes)].url) for i in range(count)]


async def room_of(clients: list[WireClient], room: str) -> None:
    """Everyone joins ``room``; every earlier member has seen every later one join."""
    for i, client in enumerate(clients):
        await client.join(room)
        for earlier in clients[:i]:
            await earlier.expect("joined", room=room, session=client.session)


async def assert_no_ok_arrived(client: WireClient) -> None:
    """A ping answered after a request shows every reply to it has arrived."""
    pong = await client.request("ping")
    assert pong["type"] == "pong"
    assert client.events.empty(), client.events.get_nowait()


# --- membership ------------------------------------------------------------------


async def test_join_of_a_joined_room_is_ok_without_a_second_joined(
    nodes: list[BrokerProcess], wire: ClientFactory, room: str
) -> None:
    watcher, joiner = await connect(wire, nodes, 2)
    await room_of([watcher, joiner], room)

    again = await joiner.request("join", room=room)

    assert again["type"] == "ok"
    await watcher.expect_silence()


async def test_join_of_a_joined_room_does_not_double_delivery(
    nodes: list[BrokerProcess], wire: ClientFactory, room: str
) -> None:
    speaker, joiner = await connect(wire, nodes, 2)
    await room_of([speaker, joiner], room)
    await joiner.join(room)

    await speaker.say(room, "once")

    await joiner.expect("message", body="once")
    await joiner.expect_silence()


async def test_leave_of_a_room_not_joined_is_not_member(
    node: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    client = await wire(node.url)
    reply = await client.request("leave", room=room)
    assert (reply["type"], reply["code"]) == ("error", "not_member")


async def test_say_to_a_room_not_joined_is_not_member(
    node: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    client = await wire(node.url)
    reply = await client.request("say", room="nope", body="x")
    assert (reply["type"], reply["code"]) == ("error", "not_member")
    assert "nope" in reply["message"]


async def test_say_to_a_room_someone_else_joined_is_not_member(
    node: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    member, outsider = await connect(wire, [node], 2)
    await member.join(room)

    reply = await outsider.request("say", room=room, body="x")

    assert reply["code"] == "not_member"
    await member.expect_silence()


async def test_leave_then_say_is_not_member(
    node: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    client = await wire(node.url)
    await client.join(room)
    assert (await client.request("leave", room=room))["type"] == "ok"

    reply = await client.request("say", room=room, body="x")

    assert reply["code"] == "not_member"


async def test_leave_then_leave_again_is_not_member(
    node: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    client = await wire(node.url)
    await client.join(room)
    await client.request("leave", room=room)
    assert (await client.request("leave", room=room))["code"] == "not_member"


async def test_left_member_receives_nothing_more(
    nodes: list[BrokerProcess], wire: ClientFactory, room: str
) -> None:
    speaker, leaver = await connect(wire, nodes, 2)
    await room_of([speaker, leaver], room)
    await leaver.request("leave", room=room)
    await speaker.expect("left", session=leaver.session)

    await speaker.say(room, "after you left")

    await leaver.expect_silence()


async def test_room_limit_refuses_one_more_room(
    node: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    client = await wire(node.url)
    for i in range(MAX_ROOMS):
        await client.join(f"{room}-{i}")

    reply = await client.request("join", room=f"{room}-x")

    assert (reply["type"], reply["code"]) == ("error", "too_many_rooms")


async def test_room_limit_frees_a_place_on_leave(
    node: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    client = await wire(node.url)
    for i in range(MAX_ROOMS):
        await client.join(f"{room}-{i}")
    await client.request("leave", room=f"{room}-0")

    assert (await client.request("join", room=f"{room}-new"))["type"] == "ok"


# --- messages --------------------------------------------------------------------


async def test_sender_does_not_receive_its_own_message(
    nodes: list[BrokerProcess], wire: ClientFactory, room: str
) -> None:
    sender, other = await connect(wire, nodes, 2)
    await room_of([sender, other], room)

    reply = await sender.request("say", room=room, body="mine")

    assert reply["type"] == "ok"
    await other.expect("message", body="mine")
    await sender.expect_silence()


async def test_every_other_member_receives_a_message_exactly_once(
    nodes: list[BrokerProcess], wire: ClientFactory, room: str
) -> None:
    clients = await connect(wire, nodes, 5)
    await room_of(clients, room)
    sender, receivers = clients[0], clients[1:]

    await sender.say(room, {"text": "hi", "n": [1, 2]})

    for receiver in receivers:
        await receiver.expect(
            "message", room=room, body={"text": "hi", "n": [1, 2]}, **sent_by(sender.session)
        )
    await asyncio.gather(*(client.expect_silence() for client in clients))


async def test_message_reaches_only_members_of_its_room(
    nodes: list[BrokerProcess], wire: ClientFactory, room: str
) -> None:
    sender, member, elsewhere = await connect(wire, nodes, 3)
    await room_of([sender, member], room)
    await elsewhere.join(f"{room}-there")

    await sender.say(room, "x")

    await member.expect("message", room=room)
    await elsewhere.expect_silence()


async def test_one_senders_messages_arrive_in_order(
    nodes: list[BrokerProcess], wire: ClientFactory, room: str
) -> None:
    sender, receiver = await connect(wire, nodes, 2)
    await room_of([sender, receiver], room)

    for i in range(100):
        await sender.send_raw(json.dumps({"type": "say", "room": room, "body": i}))

    bodies = [(await receiver.expect("message"))["body"] for _ in range(100)]
    assert bodies == list(range(100))


async def test_message_body_keeps_the_spelling_it_was_said_with(
    node: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    body = '{"z":1.50,  "a":[ ],"u":"caf\\u00e9"}'
    sender = await wire(node.url)
    # A bare websockets client, to see the frame exactly as the broker wrote it.
    async with ws_connect(node.url) as receiver:
        await receiver.recv()  # welcome
        await receiver.send(json.dumps({"type": "join", "room": room, "ref": 1}))
        ok = json.loads(await receiver.recv())
        assert (ok["type"], ok["ref"]) == ("ok", 1)
        await sender.join(room)
        assert json.loads(await receiver.recv())["type"] == "joined"

        await sender.send_raw(f'{{"type":"say","room":"{room}","ref":2,"body":{body}}}')
        frame = await asyncio.wait_for(receiver.recv(), 5)

    assert isinstance(frame, str)
    assert '"body":' + body in frame


# --- joined and left -------------------------------------------------------------


async def test_joined_goes_to_the_other_members_only(
    nodes: list[BrokerProcess], wire: ClientFactory, room: str
) -> None:
    first, second, joiner = await connect(wire, nodes, 3)
    await room_of([first, second], room)

    await joiner.join(room)

    for other in (first, second):
        await other.expect("joined", room=room, session=joiner.session)
    await joiner.expect_silence()


async def test_left_goes_to_the_other_members_only(
    nodes: list[BrokerProcess], wire: ClientFactory, room: str
) -> None:
    first, second, leaver = await connect(wire, nodes, 3)
    await room_of([first, second, leaver], room)

    assert (await leaver.request("leave", room=room))["type"] == "ok"

    for other in (first, second):
        await other.expect("left", room=room, session=leaver.session)
    await leaver.expect_silence()


async def test_first_member_of_a_room_gets_no_joined(
    node: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    client = await wire(node.url)
    await client.join(room)
    await client.expect_silence()


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_disconnect_leaves_every_room(
    nodes: list[BrokerProcess], wire: ClientFactory, how: str, room: str
) -> None:
    watcher_a, watcher_b, dropper = await connect(wire, nodes, 3)
    await room_of([watcher_a, dropper], f"{room}-a")
    await room_of([watcher_b, dropper], f"{room}-b")

    if how == "close":
        await dropper.close()
    else:
        dropper.ws.transport.abort()  # a TCP drop, no closing handshake

    await watcher_a.expect("left", room=f"{room}-a", session=dropper.session)
    await watcher_b.expect("left", room=f"{room}-b", session=dropper.session)
    await watcher_a.expect_silence()


async def test_disconnected_member_is_gone_for_later_messages(
    nodes: list[BrokerProcess], wire: ClientFactory, room: str
) -> None:
    speaker, listener, dropper = await connect(wire, nodes, 3)
    await room_of([speaker, listener, dropper], room)
    dropper.ws.transport.abort()
    await speaker.expect("left", session=dropper.session)
    await listener.expect("left", session=dropper.session)

    await speaker.say(room, "still here?")

    await listener.expect("message", body="still here?")
    await speaker.expect_silence()


# --- refs ------------------------------------------------------------------------


async def test_request_without_ref_gets_no_ok(
    node: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    client, watcher = await connect(wire, [node], 2)
    await watcher.join(room)

    await client.send_raw(json.dumps({"type": "join", "room": room}))

    await watcher.expect("joined", session=client.session)  # the join did happen
    await assert_no_ok_arrived(client)


async def test_say_without_ref_gets_no_ok_but_is_delivered(
    node: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    sender, receiver = await connect(wire, [node], 2)
    await room_of([sender, receiver], room)

    await sender.send_raw(json.dumps({"type": "say", "room": room, "body": "quiet"}))

    await receiver.expect("message", body="quiet")
    await assert_no_ok_arrived(sender)


async def test_request_without_ref_gets_its_error_with_ref_null(
    node: BrokerProcess, wire: ClientFactory, room: str
) -> None:
    client = await wire(node.url)
    await client.send_raw('{"type":"say","room":"nope","body":1}')
    await client.expect("error", code="not_member", ref=None)


@pytest.mark.parametrize("ref", [0, -1, "a", "x" * 64, 2**53])
async def test_reply_echoes_the_ref_verbatim(
    node: BrokerProcess, wire: ClientFactory, ref: int | str, room: str
) -> None:
    client = await wire(node.url)
    future: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()
    client.replies[ref] = future
    await client.send_raw(json.dumps({"type": "join", "room": room, "ref": ref}))
    reply = await asyncio.wait_for(future, 5)
    assert (reply["type"], reply["ref"]) == ("ok", ref)
    # The join's ok also carries the room's position (docs/HISTORY-PRESENCE.md).
    assert set(reply) <= {"type", "ref", "offset", "epoch"}


async def test_ping_gets_pong_with_its_ref(node: BrokerProcess, wire: ClientFactory) -> None:
    client = await wire(node.url)
    assert await client.request("ping") == {"type": "pong", "ref": 1}


# --- welcome, health, shutdown ---------------------------------------------------


async def test_welcome_names_session_node_and_protocol_1(
    node: BrokerProcess, wire: ClientFactory
) -> None:
    first, second = await connect(wire, [node], 2)
    assert first.welcome["protocol"] == 1
    assert first.welcome["node"] == second.welcome["node"]
    assert first.session != second.session


def test_healthz_answers_200_with_json(node: BrokerProcess) -> None:
    status, body = node.health()
    assert status == 200
    health = json.loads(body)
    assert isinstance(health, dict)
    assert health["status"] == "ok"


def test_unknown_path_is_404(node: BrokerProcess) -> None:
    status, _ = http_get(node.http + "/no-such-path")
    assert status == 404


async def test_sigterm_closes_every_client_with_1001(
    own_nodes: list[BrokerProcess], wire: ClientFactory, room: str
) -> None:
    clients = await connect(wire, own_nodes, 21)
    await room_of(clients[:5], room)
    for client in clients[5:]:
        await client.join(room)

    stopped, on_stopped = own_nodes[0], clients[:: len(own_nodes)]
    exit_code = await asyncio.to_thread(stopped.terminate)

    for client in on_stopped:
        await client.wait_closed()
        assert client.ws.close_code == 1001
    assert exit_code == 0


@pytest.mark.redis
async def test_members_on_a_stopped_node_are_announced_left_elsewhere(
    request: pytest.FixtureRequest, broker: BrokerFactory, wire: ClientFactory, room: str
) -> None:
    stopping, staying = start_topology("redis-cluster", broker, request)[:2]
    watcher = await wire(staying.url)
    leaving = [await wire(stopping.url) for _ in range(10)]
    await room_of([watcher, *leaving], room)

    assert await asyncio.to_thread(stopping.terminate) == 0

    gone = {(await watcher.expect("left", room=room))["session"] for _ in leaving}
    assert gone == {client.session for client in leaving}
    await watcher.expect_silence()


# --- configuration from the environment ------------------------------------------


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started by a test, killed by PID at the end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def wait_healthy(port: int, process: subprocess.Popen[bytes], timeout: float = 15.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        status, body = http_get(f"http://127.0.0.1:{port}/healthz")
        if status == 200:
            return body
        assert process.poll() is None, f"broker exited with {process.returncode}"
        assert time.monotonic() < deadline, "broker did not become healthy"
        time.sleep(0.05)


def serve(spawn: list[subprocess.Popen[bytes]], *args: str, **env: str) -> subprocess.Popen[bytes]:
    """``python -m broker serve ARGS`` with ``env`` added, as users start it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "broker", "serve", *args],
        cwd=REPO,
        env={**clean, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    spawn.append(process)
    return process


def test_serve_listens_on_broker_port_and_names_itself_broker_node_id(
    spawn: list[subprocess.Popen[bytes]],
) -> None:
    port = free_port()
    process = serve(spawn, BROKER_PORT=str(port), BROKER_NODE_ID="n-from-env")

    health = json.loads(wait_healthy(port, process))

    assert health["node"] == "n-from-env"
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0


def test_serve_flags_win_over_environment(spawn: list[subprocess.Popen[bytes]]) -> None:
    flag_port, env_port = free_port(), free_port()
    process = serve(
        spawn,
        "--port",
        str(flag_port),
        "--node-id",
        "n-from-flag",
        BROKER_PORT=str(env_port),
        BROKER_NODE_ID="n-from-env",
    )

    health = json.loads(wait_healthy(flag_port, process))

    assert health["node"] == "n-from-flag"
    assert http_get(f"http://127.0.0.1:{env_port}/healthz")[0] == 0


def test_serve_refuses_a_bad_environment_value(spawn: list[subprocess.Popen[bytes]]) -> None:
    process = serve(spawn, BROKER_PORT="eighty")
    assert process.wait(20) == 2
