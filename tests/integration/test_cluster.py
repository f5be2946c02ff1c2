"""Three broker processes on one real Redis behave as one broker
(PROTOCOL.md, "Semantics": rooms are cluster-wide)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import BrokerFactory, ClientFactory
from tests.support.processes import BrokerProcess, RedisServer

pytestmark = pytest.mark.redis


def sent_by(session: str) -> dict[str, Any]:
    """The ``from`` field to expect (a Python keyword, so passed unpacked)."""
    return {"from": session}


@pytest.fixture
def cluster(
    broker: BrokerFactory, shared_redis: RedisServer, namespace: str
) -> list[BrokerProcess]:
    """Three nodes sharing one Redis under a namespace of this test's own."""
    return [
        broker("--redis-url", shared_redis.url, "--namespace", namespace, "--node-id", f"n-{i}")
        for i in range(3)
    ]


async def test_message_reaches_members_on_every_node_exactly_once(
    cluster: list[BrokerProcess], wire: ClientFactory
) -> None:
    clients = [await wire(node.url) for node in cluster]
    for client in clients:
        await client.join("lobby")
    for i, client in enumerate(clients):
        for other in clients[i + 1 :]:
            await client.expect("joined", room="lobby", session=other.session)

    await clients[0].say("lobby", {"text": "hi"})

    for receiver in clients[1:]:
        event = await receiver.expect("message", room="lobby", **sent_by(clients[0].session))
        assert event["body"] == {"text": "hi"}
    for client in clients:
        await client.expect_silence()


async def test_welcome_names_the_node(cluster: list[BrokerProcess], wire: ClientFactory) -> None:
    client = await wire(cluster[2].url)
    assert client.welcome["node"] == "n-2"
    assert client.welcome["protocol"] == 1


async def test_order_of_one_senders_messages_holds_across_nodes(
    cluster: list[BrokerProcess], wire: ClientFactory
) -> None:
    sender = await wire(cluster[0].url)
    receiver = await wire(cluster[1].url)
    await receiver.join("ordered")
    await sender.join("ordered")
    await receiver.expect("joined", session=sender.session)

    replies = await asyncio.gather(
        *(sender.request("say", room="ordered", body=i) for i in range(200))
    )

    assert all(reply["type"] == "ok" for reply in replies)
    bodies = [(await receiver.expect("message"))["body"] for _ in range(200)]
    assert bodies == list(range(200))


async def test_abrupt_drop_announces_left_on_other_nodes(
    cluster: list[BrokerProcess], wire: ClientFactory
) -> None:
    watcher = await wire(cluster[0].url)
    dropper = await wire(cluster[1].url)
    await watcher.join("room")
    await dropper.join("room")
    await watcher.expect("joined", session=dropper.session)

    dropper.ws.transport.abort()  # a TCP drop, no closing handshake

    await watcher.expect("left", room="room", session=dropper.session)


async def test_no_ghost_member_after_drop(
    cluster: list[BrokerProcess], wire: ClientFactory
) -> None:
    speaker = await wire(cluster[0].url)
    dropper = await wire(cluster[1].url)
    listener = await wire(cluster[1].url)
    for client in (speaker, dropper, listener):
        await client.join("ghosts")
    await speaker.expect("joined", session=dropper.session)
    await speaker.expect("joined", session=listener.session)

    dropper.ws.transport.abort()
    await speaker.expect("left", session=dropper.session)
    # The listener joined right after the dropper, so it may or may not have
    # seen the dropper's `joined`; it must see its `left`.
    event = await listener.next_event()
    if event["type"] == "joined":
        event = await listener.next_event()
    assert (event["type"], event["session"]) == ("left", dropper.session)
    await speaker.say("ghosts", "still here?")

    await listener.expect("message", body="still here?")
    await listener.expect_silence()


async def test_sigterm_closes_clients_with_1001_and_exits_0(
    cluster: list[BrokerProcess], wire: ClientFactory
) -> None:
    client = await wire(cluster[0].url)
    await client.join("bye")

    exit_code = await asyncio.to_thread(cluster[0].terminate)

    await client.wait_closed()
    assert client.ws.close_code == 1001
    assert exit_code == 0
