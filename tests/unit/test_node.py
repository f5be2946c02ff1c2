"""broker.node: the delivery rule (this node's members get a payload only once
the backend accepted it), and the join and leave sequences (when they are
announced and when they resolve), with a backend whose publishes the test
accepts or refuses by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from broker.backends import BackendUnavailable, MemoryBackend
from broker.backends.base import Delivery, Membership
from broker.node import Node
from tests.support.fakes import ClosedOutbox, HeldBackend, RecordingOutbox, next_turn


@pytest.fixture
async def held() -> HeldBackend:
    return HeldBackend()


@pytest.fixture
async def node(held: HeldBackend) -> AsyncIterator[Node]:
    node = Node("n-test", held)
    await node.start()
    yield node
    held.accept_all()
    await node.close()


async def join_accepted(node: Node, room: str, session: str) -> RecordingOutbox:
    outbox = RecordingOutbox()
    await node.join(room, session, outbox)
    return outbox


async def test_join_subscribes_the_node_and_announces_joined(node: Node, held: HeldBackend) -> None:
    await join_accepted(node, "lobby", "s-1")
    assert held.rooms == {"lobby"}
    assert held.types() == ["joined"]


async def test_join_of_a_member_again_announces_nothing(node: Node, held: HeldBackend) -> None:
    outbox = await join_accepted(node, "lobby", "s-1")
    await node.join("lobby", "s-1", outbox)
    assert held.types() == ["joined"]


async def test_leave_announces_left_and_unsubscribes_the_last_member(
    node: Node, held: HeldBackend
) -> None:
    await join_accepted(node, "lobby", "s-1")
    await node.leave("lobby", "s-1")
    assert held.types() == ["joined", "left"]
    assert held.rooms == set()


async def test_local_members_get_a_publish_only_once_accepted(
    node: Node, held: HeldBackend
) -> None:
    listener = await join_accepted(node, "lobby", "s-1")
    before = len(listener.payloads)
    held.hold = True

    accepted = node.publish("lobby", "s-2", b'{"type":"message"}')
    await next_turn()  # in which an eager node would deliver
    assert len(listener.payloads) == before

    held.published[-1][3].set_result(None)
    await next_turn()  # the acceptance's callbacks run
    assert accepted.done()
    assert listener.payloads[before:] == [b'{"type":"message"}']


async def test_a_refused_publish_reaches_no_local_member(node: Node, held: HeldBackend) -> None:
    listener = await join_accepted(node, "lobby", "s-1")
    before = len(listener.payloads)
    held.hold = True

    accepted = node.publish("lobby", "s-2", b'{"type":"message"}')
    held.published[-1][3].set_exception(BackendUnavailable("down"))
    await next_turn()  # the refusal's callbacks run

    assert isinstance(accepted.exception(), BackendUnavailable)
    assert listener.payloads[before:] == []


async def test_join_returns_only_once_its_joined_was_accepted(
    node: Node, held: HeldBackend
) -> None:
    held.hold = True
    joining = asyncio.ensure_future(node.join("lobby", "s-1", RecordingOutbox()))
    for _ in range(10):  # the subscription's task, then the announcement
        await next_turn()
    assert held.types() == ["joined"]
    assert not joining.done(), "join returned while its joined announcement was pending"
    held.accept_all()
    assert await joining is True


async def test_leave_resolves_only_once_its_left_was_accepted(
    node: Node, held: HeldBackend
) -> None:
    await join_accepted(node, "lobby", "s-1")
    held.hold = True
    told = node.leave("lobby", "s-1")
    await next_turn()
    assert not told.done()
    held.accept_all()
    await told


async def test_leave_resolves_even_when_its_left_is_refused(node: Node, held: HeldBackend) -> None:
    await join_accepted(node, "lobby", "s-1")
    held.hold = True
    told = node.leave("lobby", "s-1")
    held.published[-1][3].set_exception(BackendUnavailable("down"))
    await told
    assert node.stats()["unannounced"] == 1


async def test_leave_of_a_non_member_resolves_at_once_announcing_nothing(
    node: Node, held: HeldBackend
) -> None:
    told = node.leave("lobby", "s-1")
    await next_turn()
    assert told.done()
    assert held.published == []


async def test_leave_removes_the_member_before_it_resolves(node: Node, held: HeldBackend) -> None:
    await join_accepted(node, "lobby", "s-1")
    held.hold = True
    node.leave("lobby", "s-1")
    assert node.hub.members("lobby") == ()


async def test_join_and_leave_track_the_membership_for_crash_recovery(
    node: Node, held: HeldBackend
) -> None:
    await node.join("lobby", "s-1", RecordingOutbox(), user="alice")
    node.leave("lobby", "s-1", user="alice")
    membership = Membership("lobby", "s-1", "alice")
    assert held.tracked == [(membership, True), (membership, False)]


async def test_join_of_a_member_again_is_still_a_member(node: Node) -> None:
    outbox = await join_accepted(node, "lobby", "s-1")
    assert await node.join("lobby", "s-1", outbox) is True
    node.leave("lobby", "s-1")
    assert not node.hub.has_room("lobby")


async def test_a_refused_publish_is_counted(node: Node, held: HeldBackend) -> None:
    held.hold = True
    accepted = node.publish("lobby", "s-2", b"{}")
    held.published[-1][3].set_exception(BackendUnavailable("down"))
    await next_turn()
    assert accepted.done()
    assert node.counters.publish_failures == 1


async def test_a_fanned_out_publish_is_timed(node: Node) -> None:
    await join_accepted(node, "lobby", "s-1")
    await node.publish("lobby", "s-2", b"{}")
    await next_turn()
    assert sum(node.counters.latency.counts) == 1


async def test_deliveries_from_other_nodes_reach_local_members(
    node: Node, held: HeldBackend
) -> None:
    listener = await join_accepted(node, "lobby", "s-1")
    before = len(listener.payloads)
    assert held.deliver is not None
    held.deliver([Delivery("lobby", "s-9", b'{"type":"message"}', 0.0)])
    assert listener.payloads[before:] == [b'{"type":"message"}']


async def test_join_of_a_client_that_left_meanwhile_announces_nothing() -> None:
    backend = MemoryBackend()
    node = Node("n-1", backend)
    await node.start()
    try:
        outbox = ClosedOutbox()
        assert await node.join("room", "s-gone", outbox) is False
        assert not node.hub.has_room("room")
        assert backend.published == 0
    finally:
        await node.close()


async def test_refused_announcements_are_published_again_by_housekeeping(
    node: Node, held: HeldBackend
) -> None:
    await join_accepted(node, "lobby", "s-1")
    held.hold = True
    node.leave("lobby", "s-1")
    held.published[-1][3].set_exception(BackendUnavailable("down"))
    held.hold = False
    await asyncio.wait_for(held.wait_published(3), 5)  # the housekeeping interval
    await next_turn()
    assert held.types() == ["joined", "left", "left"]
    assert node.stats()["unannounced"] == 0


async def test_a_draining_node_is_not_healthy(node: Node) -> None:
    assert node.healthy()
    node.draining = True
    assert not node.healthy()


async def test_presence_hooks_announce_lost_and_revived_members(
    node: Node, held: HeldBackend
) -> None:
    assert held.hooks is not None
    held.hooks.lost([Membership("lobby", "s-dead", None)])
    held.hooks.revived([Membership("lobby", "s-back", "bob")])
    assert held.types() == ["left", "joined"]
