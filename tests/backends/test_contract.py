"""The backend contract (broker.backends.base.Backend), one suite for every
backend: delivery to every subscribed node exactly once, the publisher
included, in publish order, and only while subscribed. Positions and history
have their own suite (test_history_contract.py)."""

from __future__ import annotations

import asyncio

import pytest

from tests.backends.conftest import Peer, PeerFactory


def contents(peer: Peer) -> list[tuple[str, str, bytes]]:
    return [(d.room, d.exclude, d.payload) for d in peer.received]


async def subscribed_pair(peers: PeerFactory, room: str) -> tuple[Peer, Peer]:
    a, b = await peers(2)
    await b.backend.subscribe(room)
    return a, b


async def test_publish_reaches_a_subscribed_node_once(peers: PeerFactory) -> None:
    a, b = await subscribed_pair(peers, "lobby")

    await a.backend.publish("lobby", "s-1", b'{"type":"message"}')

    await b.wait_for(1)
    await b.expect_silence()
    assert contents(b) == [("lobby", "s-1", b'{"type":"message"}')]


async def test_publish_reaches_every_other_subscribed_node(peers: PeerFactory) -> None:
    a, b, c = await peers(3)
    await b.backend.subscribe("lobby")
    await c.backend.subscribe("lobby")

    await a.backend.publish("lobby", "s-1", b"x")

    for receiver in (b, c):
        await receiver.wait_for(1)
        await receiver.expect_silence()
        assert contents(receiver) == [("lobby", "s-1", b"x")]


async def test_publish_comes_back_to_its_subscribed_publisher_once(peers: PeerFactory) -> None:
    a, b = await subscribed_pair(peers, "lobby")
    await a.backend.subscribe("lobby")

    await a.backend.publish("lobby", "s-1", b"x")

    await b.wait_for(1)
    await a.wait_for(1)
    await a.expect_silence()
    assert contents(a) == [("lobby", "s-1", b"x")]


async def test_publish_does_not_reach_a_node_not_subscribed(peers: PeerFactory) -> None:
    a, b, c = await peers(3)
    await b.backend.subscribe("lobby")
    await c.backend.subscribe("elsewhere")

    await a.backend.publish("lobby", "s-1", b"x")

    await b.wait_for(1)
    await c.expect_silence()
    assert c.received == []


async def test_publishes_arrive_in_publish_order(peers: PeerFactory) -> None:
    a, b = await subscribed_pair(peers, "ordered")

    accepted = [a.backend.publish("ordered", "s-1", str(i).encode()) for i in range(200)]
    await asyncio.gather(*accepted)

    await b.wait_for(200)
    assert [d.payload for d in b.received] == [str(i).encode() for i in range(200)]


async def test_order_holds_across_rooms_of_one_publisher(peers: PeerFactory) -> None:
    a, b = await peers(2)
    await b.backend.subscribe("r1")
    await b.backend.subscribe("r2")

    for i in range(50):
        a.backend.publish("r1" if i % 2 else "r2", "s-1", str(i).encode())

    await b.wait_for(50)
    assert [d.payload for d in b.received] == [str(i).encode() for i in range(50)]


async def test_publish_future_resolves(peers: PeerFactory) -> None:
    (a,) = await peers(1)
    accepted = a.backend.publish("nobody-here", "s-1", b"x")
    await asyncio.wait_for(accepted, 5)
    assert accepted.done() and accepted.exception() is None


async def test_publish_future_resolves_with_a_subscriber(peers: PeerFactory) -> None:
    a, _ = await subscribed_pair(peers, "lobby")
    accepted = a.backend.publish("lobby", "s-1", b"x")
    await asyncio.wait_for(accepted, 5)
    assert accepted.done() and accepted.exception() is None


@pytest.mark.parametrize(
    "payload",
    [
        b'{"type":"message","room":"r","from":"s-1","body":"caf\xc3\xa9"}',
        b'{"a":"line\\nbreak"}\n\n{"raw newlines"}\n',
        b"",
        bytes(range(256)),
        b"x" * 70_000,
    ],
    ids=["utf8", "newlines", "empty", "all-bytes", "large"],
)
async def test_payload_bytes_arrive_unchanged(peers: PeerFactory, payload: bytes) -> None:
    a, b = await subscribed_pair(peers, "lobby")

    await a.backend.publish("lobby", "s-0123456789ab", payload)

    (delivery,) = await b.wait_for(1)
    assert delivery.payload == payload
    assert delivery.exclude == "s-0123456789ab"
    assert delivery.room == "lobby"


async def test_room_names_with_every_allowed_character_arrive_unchanged(
    peers: PeerFactory,
) -> None:
    room = "Az09_.:@-" + "r" * 119
    a, b = await subscribed_pair(peers, room)
    await a.backend.publish(room, "s-1", b"x")
    (delivery,) = await b.wait_for(1)
    assert delivery.room == room


async def test_published_at_arrives_unchanged(peers: PeerFactory) -> None:
    a, b = await subscribed_pair(peers, "lobby")
    await a.backend.publish("lobby", "s-1", b"x", 1_700_000_000.123456)
    (delivery,) = await b.wait_for(1)
    assert delivery.published_at == 1_700_000_000.123456


async def test_delivery_stops_after_unsubscribe(peers: PeerFactory) -> None:
    a, b = await peers(2)
    await b.backend.subscribe("gone")
    await b.backend.subscribe("marker")

    b.backend.unsubscribe("gone")
    a.backend.publish("gone", "s-1", b"too late")
    a.backend.publish("marker", "s-1", b"marker")

    # The marker was published after "gone": once it is here, so is anything
    # for "gone" that would ever be delivered.
    await b.wait_for(1)
    await b.expect_silence()
    assert contents(b) == [("marker", "s-1", b"marker")]


@pytest.mark.parametrize("turn_between", [False, True], ids=["at-once", "after-a-turn"])
async def test_subscribe_unsubscribe_subscribe_ends_subscribed(
    peers: PeerFactory, turn_between: bool
) -> None:
    a, b = await peers(2)
    await b.backend.subscribe("again")
    b.backend.unsubscribe("again")
    if turn_between:
        # Let a backend that unsubscribes in the background start doing so.
        await asyncio.sleep(0)
    await b.backend.subscribe("again")

    await a.backend.publish("again", "s-1", b"x")

    await b.wait_for(1)
    await b.expect_silence()
    assert contents(b) == [("again", "s-1", b"x")]


async def test_publish_right_after_subscribe_returns_is_delivered(peers: PeerFactory) -> None:
    a, b = await peers(2)
    for i in range(20):
        await b.backend.subscribe(f"fresh-{i}")
        a.backend.publish(f"fresh-{i}", "s-1", str(i).encode())
    await b.wait_for(20)
    assert sorted(d.room for d in b.received) == sorted(f"fresh-{i}" for i in range(20))


async def test_backend_is_healthy_once_started(peers: PeerFactory) -> None:
    (a,) = await peers(1)
    assert a.backend.healthy()
