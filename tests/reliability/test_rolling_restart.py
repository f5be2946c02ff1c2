"""A lossless rolling restart of a whole cluster under load (issue 12,
"Tests: lossless rolling restart"; docs/HISTORY-PRESENCE.md, "Recovery").

Three nodes on one Redis; ``LISTENERS`` SDK clients spread over them, each
given all three URLs and in one or two of ``ROOMS`` rooms; ``SAYERS`` more
SDK clients, each in ``SAYER_ROOMS`` rooms (every room has two, on different
nodes), say at a steady pace through the whole run. Every node in turn gets
SIGTERM (it drains: its clients get 1001 and reconnect to the next node with
``since``), exits 0, and is started again on its port.

At the end, every client has received, in every room it is in, every offset
of the room exactly once and in order, except the offsets its own says got
(a sender never receives its own messages), each with the body of the say
that got it: no say that got ``ok`` is missing anywhere.

A say whose outcome the SDK cannot know (its connection ended before the
reply) may or may not have been published: it is "uncertain". If it was, its
offset is a message like any other for everyone else, and its sender may
receive it when it recovers from a position before it.

Bounded: a few thousand messages, well under 90 s on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest

from roomcast_client import (
    BrokerError,
    Client,
    ClientError,
    Gap,
    Message,
    Reconnected,
    Unavailable,
    connect,
    decode_body,
)
from tests.reliability.observe import eventually
from tests.support.http_api import call
from tests.support.positions import sequence_faults
from tests.support.processes import BrokerProcess, RedisServer

pytestmark = pytest.mark.redis

NODES = 3
ROOMS = tuple(f"roll-{i}" for i in range(20))
LISTENERS = 200
SAYERS = 8
SAYER_ROOMS = 5
SAY_INTERVAL = 0.05
"""Seconds between two says of one sayer: 160 says/s in all, 8 per room."""
SAYS_AFTER = 10
"""Says each sayer makes after the last node is back, so the run ends in traffic."""
DRAIN_SECONDS = 1.0
API_KEY = "rolling-api-key-0123456789abcdef"
OPEN_AT_ONCE = 20
"""Clients opening (connect and joins) at the same time."""
SETTLE_SECONDS = 20.0

Body = tuple[int, int]
"""A say's body: (sayer, sequence number), unique in the run."""


def listener_rooms(i: int) -> list[str]:
    """One room for odd listeners, two for even ones."""
    rooms = [ROOMS[i % len(ROOMS)]]
    if i % 2 == 0 and (second := ROOMS[(i * 7 + 3) % len(ROOMS)]) not in rooms:
        rooms.append(second)
    return rooms


def sayer_rooms(p: int) -> list[str]:
    """Sayers ``p`` and ``p + SAYERS // 2`` share rooms and sit on different nodes."""
    return [ROOMS[(p * SAYER_ROOMS + j) % len(ROOMS)] for j in range(SAYER_ROOMS)]


@dataclass(frozen=True)
class Received:
    """One message as a client received it."""

    offset: int
    epoch: str
    body: Body


@dataclass
class Peer:
    """One SDK client, what it received per room, and its reconnects."""

    client: Client
    rooms: list[str]
    received: dict[str, list[Received]] = field(default_factory=dict)
    reconnects: int = 0
    not_recovered: list[str] = field(default_factory=list)
    """Rooms a reconnect reported as not recovered."""
    gaps: list[Gap] = field(default_factory=list)
    own: dict[str, dict[int, Body]] = field(default_factory=dict)
    """Per room, the offsets its says' ``ok`` gave, with their bodies."""
    uncertain: set[Body] = field(default_factory=set)
    """Its says whose outcome it could not know."""
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        """Record every event until the client ends."""
        async for event in self.client:
            if isinstance(event, Message):
                body = decode_body(event, tuple[int, int])
                assert isinstance(event.offset, int) and isinstance(event.epoch, str), event
                self.received[event.room].append(Received(event.offset, event.epoch, body))
            elif isinstance(event, Reconnected):
                self.reconnects += 1
                self.not_recovered.extend(event.not_recovered)
            elif isinstance(event, Gap):
                self.gaps.append(event)

    def last(self, room: str) -> int:
        got = self.received[room]
        return got[-1].offset if got else 0


class Cluster:
    """Three nodes on ``redis`` that can be restarted one by one on their ports."""

    def __init__(self, redis: RedisServer) -> None:
        self.args = ("--redis-url", redis.url, "--drain-seconds", str(DRAIN_SECONDS))
        self.nodes = [BrokerProcess(args=self.args, env={"BROKER_API_KEY": API_KEY})]
        self.nodes += [
            BrokerProcess(args=self.args, env=self.nodes[0].env) for _ in range(NODES - 1)
        ]
        self.every: list[BrokerProcess] = list(self.nodes)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    async def start(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(node.start) for node in self.nodes))

    async def restart(self, k: int) -> int:
        """SIGTERM node ``k``, wait for its exit, start it again on its port.

        Returns:
            The exit code of the stopped process.
        """
        node = self.nodes[k]
        assert node.process is not None
        node.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(node.process.wait, DRAIN_SECONDS + 15)
        again = BrokerProcess(args=node.args, port=node.port, env=node.env)
        self.nodes[k] = again
        self.every.append(again)
        await asyncio.to_thread(again.start)
        return code

    def cleanup(self) -> None:
        for node in self.every:
            node.cleanup()


@pytest.fixture
def cluster(redis_server: RedisServer) -> Iterator[Cluster]:
    cluster = Cluster(redis_server)
    yield cluster
    cluster.cleanup()


@pytest.fixture
async def peers(cluster: Cluster) -> AsyncIterator[tuple[list[Peer], list[Peer]]]:
    """Listeners and sayers, connected and in their rooms, each reading its events."""
    await cluster.start()
    gate = asyncio.Semaphore(OPEN_AT_ONCE)
    urls = cluster.urls
    opened: list[Peer] = []

    async def open_peer(i: int, rooms: list[str]) -> Peer:
        # Rotated so that clients are spread over the nodes, and each
        # reconnects to the next node in turn.
        rotated = urls[i % NODES :] + urls[: i % NODES]
        async with gate:
            peer = Peer(await connect(rotated), rooms)
            opened.append(peer)
            for room in rooms:
                peer.received[room] = []
                peer.own[room] = {}
                await peer.client.join(room)
        peer.reader = asyncio.create_task(peer.read())
        return peer

    try:
        listeners = await asyncio.gather(
            *(open_peer(i, listener_rooms(i)) for i in range(LISTENERS))
        )
        sayers = await asyncio.gather(*(open_peer(p, sayer_rooms(p)) for p in range(SAYERS)))
        yield list(listeners), list(sayers)
    finally:
        for peer in opened:
            await peer.client.close()
            if peer.reader is not None:
                with contextlib.suppress(ClientError):
                    await peer.reader


async def say_steadily(p: int, sayer: Peer, stop: asyncio.Event) -> None:
    """Say in the sayer's rooms in turn every ``SAY_INTERVAL`` until ``stop``
    is set, then ``SAYS_AFTER`` more; record each outcome."""
    started = time.monotonic()
    after = 0
    for n in itertools.count():
        room = sayer.rooms[n % len(sayer.rooms)]
        body = (p, n)
        try:
            position = await sayer.client.say(room, body)
        except Unavailable:
            pass  # nothing was sent (PROTOCOL.md)
        except (BrokerError, ClientError):
            sayer.uncertain.add(body)
        else:
            assert position is not None, "a room with history gives every say a position"
            sayer.own[room][position.offset] = body
        if stop.is_set():
            after += 1
            if after >= SAYS_AFTER:
                return
        # The pace of the publisher, not a wait for anything.
        await asyncio.sleep(max(0.0, started + (n + 1) * SAY_INTERVAL - time.monotonic()))


def room_position(node: BrokerProcess, room: str) -> tuple[int, str]:
    """The room's current offset and epoch, from the history endpoint."""
    status, answer = call("GET", f"{node.http}/rooms/{room}/history?limit=1", key=API_KEY)
    assert status == 200, answer
    return answer["offset"], answer["epoch"]


async def test_rolling_restart_under_load_loses_no_message(
    cluster: Cluster, peers: tuple[list[Peer], list[Peer]]
) -> None:
    listeners, sayers = peers
    everyone = [*listeners, *sayers]
    stop = asyncio.Event()
    saying = [asyncio.create_task(say_steadily(p, s, stop)) for p, s in enumerate(sayers)]

    codes = []
    try:
        for k in range(NODES):
            codes.append(await cluster.restart(k))
            # Every client is back (on some node) before the next node goes.
            await eventually(lambda: all(peer.client.connected for peer in everyone), timeout=15)
        stop.set()
        await asyncio.gather(*saying)
    finally:
        for task in saying:  # when the run failed half-way
            task.cancel()

    assert codes == [0] * NODES
    assert all(peer.reconnects >= 1 for peer in everyone), "every client's node was restarted"
    last = {room: await asyncio.to_thread(room_position, cluster.nodes[0], room) for room in ROOMS}
    await settle(everyone, last)
    assert_everyone_has_every_offset_once_in_order(listeners, sayers, last)
    # History held every gap, and no client fell behind its own queue.
    assert [p.not_recovered for p in everyone if p.not_recovered] == []
    assert [p.gaps for p in everyone if p.gaps] == []


async def settle(everyone: list[Peer], last: dict[str, tuple[int, str]]) -> None:
    """Wait until each client's last received offset in each room is the
    room's last one it should receive (or the comparison will say why not)."""

    def expected_last(peer: Peer, room: str) -> int:
        offset = last[room][0]
        while offset in peer.own[room]:
            offset -= 1
        return offset

    def arrived() -> bool:
        return all(
            peer.last(room) >= expected_last(peer, room) for peer in everyone for room in peer.rooms
        )

    with contextlib.suppress(TimeoutError):
        await eventually(arrived, timeout=SETTLE_SECONDS)


def assert_everyone_has_every_offset_once_in_order(
    listeners: list[Peer], sayers: list[Peer], last: dict[str, tuple[int, str]]
) -> None:
    # Per room, the body of each offset: from the says' oks, then from what
    # listeners received (an uncertain say that was published).
    said: dict[str, dict[int, Body]] = {room: {} for room in ROOMS}
    for sayer in sayers:
        for room, given in sayer.own.items():
            said[room].update(given)
    for listener in listeners:
        for room, frames in listener.received.items():
            for frame in frames:
                said[room].setdefault(frame.offset, frame.body)
    oked = {room: {o for sayer in sayers for o in sayer.own.get(room, {})} for room in ROOMS}
    uncertain = set().union(*(sayer.uncertain for sayer in sayers))
    faults = []
    for i, peer in enumerate([*listeners, *sayers]):
        for room in peer.rooms:
            final, epoch = last[room]
            offsets = [frame.offset for frame in peer.received[room]]
            # Its own says never come back; its own uncertain ones, if
            # published, may (it recovers from a position before them).
            may_miss = {o for o in range(1, final + 1) if said[room].get(o) in peer.uncertain}
            want = [
                o
                for o in range(1, final + 1)
                if o not in peer.own[room] and (o not in may_miss or o in offsets)
            ]
            if problem := sequence_faults(offsets, want):
                faults.append(f"client {i} in {room}: {problem}")
            wrong = [
                frame
                for frame in peer.received[room]
                if frame.epoch != epoch
                or frame.body != said[room].get(frame.offset)
                or (frame.offset not in oked[room] and frame.body not in uncertain)
            ]
            if wrong:
                faults.append(f"client {i} in {room}: {len(wrong)} not as said, first {wrong[0]}")
    assert not faults, "\n".join(faults[:20])
