"""No message lost inside the cluster while Redis misbehaves
(docs/HISTORY-PRESENCE.md, "No lost messages inside the cluster"; issue 12,
"Tests: faults").

Three nodes on one Redis of the test's own; ``ROOMS`` rooms, each with
``LISTENERS`` members on every node; one sayer per node, member of every
room. Together they say ``SAYS`` messages at a steady ``RATE`` (without
waiting for replies) while Redis suffers one fault mid-run. Raw WebSocket
clients, so that the server alone is checked.

Afterwards, in every room, every member has received every offset after its
join's position up to the room's last one, exactly once and in order, except
the offsets its own says got (a sender never receives its own messages); each
with the body of the say whose ``ok`` gave that offset, in the room's epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import BrokerFactory, ClientFactory
from tests.reliability.observe import eventually
from tests.support.positions import expected_offsets, sequence_faults
from tests.support.processes import BrokerProcess, RedisServer
from tests.support.redis_clients import pubsub_client_ids
from tests.support.wire import Frame, WireClient

pytestmark = pytest.mark.redis

NODES = 3
ROOMS = ("fault-0", "fault-1", "fault-2")
LISTENERS = 2
"""Members of each room on each node, besides the sayers."""
SAYS = 2000
RATE = 400.0
"""Says per second, all sayers together: steady, bounded, ~5 s of traffic."""
HISTORY_SIZE = 1000
"""Enough to hold what a stalled or reconnecting node missed at ``RATE``."""
REPLY_SECONDS = 7.0
"""A say's reply may wait for a stalled Redis (the publisher gives up at 5 s)."""
SETTLE_SECONDS = 20.0
"""How long the last offsets may take to reach every member after the says."""


@dataclass
class Member:
    """A client in some rooms, with where it joined each and what it received."""

    client: WireClient
    joined_at: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Per room, the ``offset`` and ``epoch`` of its join's ``ok``."""
    received: dict[str, list[Frame]] = field(default_factory=dict)
    """Per room, the ``message`` frames received, in arrival order."""
    own: dict[str, dict[int, Any]] = field(default_factory=dict)
    """Per room, the offsets its own says got, with their bodies."""

    async def join(self, room: str) -> None:
        reply = await self.client.join(room)
        self.joined_at[room] = (reply["offset"], reply["epoch"])
        self.received[room] = []
        self.own[room] = {}

    def collect(self) -> None:
        """Move the events that arrived into ``received`` (never waits)."""
        while not self.client.events.empty():
            frame = self.client.events.get_nowait()
            if frame["type"] == "message":
                self.received[frame["room"]].append(frame)

    def has_through(self, room: str, last: int) -> bool:
        """Whether the member has what it should of ``room`` up to ``last``."""
        want = expected_offsets(self.joined_at[room][0], last, self.own[room])
        got = self.received[room]
        return not want or (bool(got) and got[-1]["offset"] >= want[-1])


@dataclass
class Cluster:
    """The nodes, the listening members and the sayers (one per node)."""

    redis: RedisServer
    nodes: list[BrokerProcess]
    listeners: list[Member]
    sayers: list[Member]

    @property
    def members(self) -> list[Member]:
        return [*self.listeners, *self.sayers]


@pytest.fixture
async def cluster(broker: BrokerFactory, redis_server: RedisServer, wire: ClientFactory) -> Cluster:
    nodes = [
        broker("--redis-url", redis_server.url, "--history-size", str(HISTORY_SIZE))
        for _ in range(NODES)
    ]
    listeners = [Member(await wire(n.url)) for n in nodes for _ in ROOMS for _ in range(LISTENERS)]
    for i, member in enumerate(listeners):
        await member.join(ROOMS[(i // LISTENERS) % len(ROOMS)])
    sayers = [Member(await wire(n.url)) for n in nodes]
    for sayer in sayers:
        for room in ROOMS:
            await sayer.join(room)
    return Cluster(redis_server, nodes, listeners, sayers)


Fault = Callable[[Cluster], Coroutine[Any, Any, None]]


async def say_steadily(cluster: Cluster, fault: Fault, at: tuple[float, ...]) -> list[Frame]:
    """Say ``SAYS`` messages at ``RATE``, sayers and rooms in turn; inflict
    ``fault`` once each fraction ``at`` of the says has been sent.

    Returns:
        The reply of every say, in the order they were sent.

    Raises:
        AssertionError: a say got no reply within ``REPLY_SECONDS``.
    """
    requests: list[asyncio.Task[Frame]] = []
    faults: list[asyncio.Task[None]] = []
    marks = {int(SAYS * fraction) for fraction in at}
    started = time.monotonic()
    for n in range(SAYS):
        if n in marks:
            faults.append(asyncio.create_task(fault(cluster)))
        sayer = cluster.sayers[n % NODES]
        room = ROOMS[(n // NODES) % len(ROOMS)]
        request = sayer.client.request("say", room=room, body=n, timeout=REPLY_SECONDS)
        requests.append(asyncio.create_task(request))
        # The pace of the publisher, not a wait for anything.
        await asyncio.sleep(max(0.0, started + (n + 1) / RATE - time.monotonic()))
    await asyncio.gather(*faults)
    return await asyncio.gather(*requests)


def record_oks(cluster: Cluster, replies: list[Frame]) -> dict[str, dict[int, Any]]:
    """Give each sayer the positions of its says; return, per room, the body
    that each offset's ``ok`` belongs to.

    Raises:
        AssertionError: a say got no ``ok`` (none of these faults makes Redis
            refuse or lose a publish), two says got one offset, or an ``ok``
            is of another epoch than the room's.
    """
    refused = [reply for reply in replies if reply["type"] != "ok"]
    assert not refused, f"{len(refused)} says not ok, first {refused[:3]}"
    bodies: dict[str, dict[int, Any]] = {room: {} for room in ROOMS}
    for n, reply in enumerate(replies):
        room, sayer = ROOMS[(n // NODES) % len(ROOMS)], cluster.sayers[n % NODES]
        assert reply["offset"] not in bodies[room], ("offset given twice", room, reply)
        assert reply["epoch"] == sayer.joined_at[room][1], ("epoch changed", room, reply)
        bodies[room][reply["offset"]] = n
        sayer.own[room][reply["offset"]] = n
    return bodies


async def run_with_fault(cluster: Cluster, fault: Fault, at: tuple[float, ...]) -> None:
    """Say under ``fault``, wait until the last offsets arrived, and check
    every member's sequence of every room."""
    replies = await say_steadily(cluster, fault, at)
    bodies = record_oks(cluster, replies)
    last = {room: max(bodies[room]) for room in ROOMS}

    def everyone_has_everything() -> bool:
        for member in cluster.members:
            member.collect()
        return all(m.has_through(room, last[room]) for m in cluster.members for room in m.received)

    # On a timeout, the comparison below says what is missing.
    with contextlib.suppress(TimeoutError):
        await eventually(everyone_has_everything, timeout=SETTLE_SECONDS)
    assert_every_member_has_every_offset_once_in_order(cluster, bodies, last)


def assert_every_member_has_every_offset_once_in_order(
    cluster: Cluster, bodies: dict[str, dict[int, Any]], last: dict[str, int]
) -> None:
    epochs = {
        room: {m.joined_at[room][1] for m in cluster.members if room in m.joined_at}
        for room in ROOMS
    }
    assert all(len(seen) == 1 for seen in epochs.values()), epochs
    assert all(sorted(bodies[room]) == list(range(1, last[room] + 1)) for room in ROOMS), (
        "the oks of a room's says must give offsets 1..N without a gap"
    )
    faults = []
    for i, member in enumerate(cluster.members):
        for room, frames in member.received.items():
            joined_at, epoch = member.joined_at[room]
            offsets = [frame["offset"] for frame in frames]
            want = expected_offsets(joined_at, last[room], member.own[room])
            if problem := sequence_faults(offsets, want):
                faults.append(f"member {i} ({member.client.session}) in {room}: {problem}")
            wrong = [
                f
                for f in frames
                if f["epoch"] != epoch or f["body"] != bodies[room].get(f["offset"])
            ]
            if wrong:
                faults.append(
                    f"member {i} in {room}: {len(wrong)} frames not as ok'd, first {wrong[0]}"
                )
    assert not faults, "\n".join(faults[:20])


# --- the faults ------------------------------------------------------------


async def kill_pubsub_connections(cluster: Cluster) -> None:
    """``CLIENT KILL TYPE pubsub``: every node's subscriber connection dies."""
    killed = await asyncio.to_thread(cluster.redis.cli, "CLIENT", "KILL", "TYPE", "pubsub")
    assert int(killed) >= NODES, killed  # at least one subscriber per node


async def stall_redis(cluster: Cluster) -> None:
    """``DEBUG SLEEP 1``: Redis answers nobody for a second (redis-cli returns
    when the sleep is over)."""
    assert await asyncio.to_thread(cluster.redis.cli, "DEBUG", "SLEEP", "1") == "OK"


async def reset_one_subscriber(cluster: Cluster) -> None:
    """``CLIENT KILL ID`` of the pub/sub connections of the second node only."""
    node = cluster.nodes[1]
    assert node.process is not None
    ids = await asyncio.to_thread(pubsub_client_ids, cluster.redis, node.process.pid)
    assert ids, "the node holds no pub/sub connection to Redis"
    for client_id in ids:
        killed = await asyncio.to_thread(cluster.redis.cli, "CLIENT", "KILL", "ID", client_id)
        assert killed == "1", killed


async def test_killing_pubsub_connections_twice_loses_no_message(cluster: Cluster) -> None:
    await run_with_fault(cluster, kill_pubsub_connections, at=(1 / 3, 2 / 3))


async def test_redis_stalling_a_second_loses_no_message(cluster: Cluster) -> None:
    await run_with_fault(cluster, stall_redis, at=(1 / 2,))


async def test_resetting_one_nodes_subscriber_loses_no_message(cluster: Cluster) -> None:
    await run_with_fault(cluster, reset_one_subscriber, at=(1 / 2,))
