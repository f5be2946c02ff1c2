"""Soak: 2,000 clients on two nodes on one Redis, churning joins, leaves and
says for about a minute; every delivery is checked against who was a member
when, and each node's memory must stay bounded.

Not part of the quick suite. Run it with::

    ROOMCAST_SOAK=1 pytest -m soak

What is checked, per receiver, room and sender (PROTOCOL.md, "Semantics"):

* nothing twice: each (sender, room, sequence number) arrives at most once;
* in order: sequence numbers arrive increasing;
* only to members: no ``message`` for a room arrives after the receiver's
  ``leave`` of it was answered and before it joins again;
* nothing lost: a say answered ``ok`` reaches every receiver that had its
  join answered before the say was sent, unless the receiver left again
  (sent ``leave``) less than ``TAIL_SECONDS`` after the say's ``ok`` and got
  nothing later from that sender in that room (a gap before a later message
  is a loss whatever the timing);
* nobody left without an answer: every request gets its reply.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from broker.bench.wsclient import WsClient, open_client
from broker.runtime import run_async
from tests.conftest import BrokerFactory
from tests.reliability.observe import rss_bytes
from tests.support.processes import BrokerProcess, RedisServer

pytestmark = [pytest.mark.soak, pytest.mark.redis]

CLIENTS = 2000
ROOMS = 200
CHURN_SECONDS = float(os.environ.get("ROOMCAST_SOAK_SECONDS", "45"))
MEAN_PAUSE = 6.0  # seconds between one client's actions: ~330 actions/s in all
TAIL_SECONDS = 5.0
REPLY_SECONDS = 10.0
SETTLE_SECONDS = 15.0
RSS_GROWTH_BOUND = 16 * 1024 * 1024  # per node, from after warm-up to the end
WARM_UP_SECONDS = 10.0


def soak_selected(config: pytest.Config) -> bool:
    """Run only when asked: ``ROOMCAST_SOAK=1`` or ``-m`` selecting ``soak``."""
    expression = str(config.getoption("-m") or "")
    selected = "soak" in expression and "not soak" not in expression
    return os.environ.get("ROOMCAST_SOAK") == "1" or selected


@pytest.fixture(autouse=True)
def only_when_asked(request: pytest.FixtureRequest) -> None:
    if not soak_selected(request.config):
        pytest.skip("soak test: run it with ROOMCAST_SOAK=1 pytest -m soak")


@dataclass
class Interval:
    """One membership of a room, as the client saw it (monotonic seconds)."""

    join_sent: float
    join_ok: float | None = None
    leave_sent: float | None = None
    leave_ok: float | None = None


@dataclass
class Said:
    room: str
    n: int
    sent: float
    ok_at: float | None = None
    code: str | None = None


@dataclass
class Violations:
    """Everything that broke the contract, with an example of each kind."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, Any] = field(default_factory=dict)

    def add(self, kind: str, example: Any) -> None:
        self.counts[kind] += 1
        self.examples.setdefault(kind, example)


class Member:
    """One lean client and what it saw."""

    def __init__(self, index: int, violations: Violations) -> None:
        self.index = index
        self.violations = violations
        self.ws: WsClient | None = None
        self.session = ""
        self.welcomed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.refs = itertools.count(1)
        self.state: dict[str, str] = {}
        self.intervals: dict[str, list[Interval]] = defaultdict(list)
        # (room, sender) -> [(n, interval index)], in order of arrival
        self.received: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
        self.latencies: list[float] = []
        self.seq: Counter[str] = Counter()
        self.said: list[Said] = []
        self.events = 0
        self.closed: int | None = None

    async def connect(self, url: str) -> None:
        self.ws = await open_client(url, self.on_texts, self.on_close)
        await asyncio.wait_for(self.welcomed, REPLY_SECONDS)

    def on_close(self, code: int) -> None:
        self.closed = code

    def on_texts(self, payloads: list[bytes]) -> None:
        now = time.monotonic()
        for payload in payloads:
            frame = msgspec.json.decode(payload)
            kind = frame["type"]
            if kind == "message":
                self.on_message(frame, now)
            elif kind in ("ok", "error", "pong"):
                future = self.replies.pop(frame["ref"], None)
                if future is None:
                    self.violations.add("reply without request", frame)
                elif not future.done():
                    future.set_result(frame)
            elif kind == "welcome":
                self.session = frame["session"]
                self.welcomed.set_result(None)
            else:
                self.events += 1

    def on_message(self, frame: dict[str, Any], now: float) -> None:
        room, sender = frame["room"], frame["from"]
        state = self.state.get(room, "out")
        if state == "out":
            self.violations.add("message to a non-member", (self.session, frame))
        if sender == self.session:
            self.violations.add("own message echoed", frame)
        interval = len(self.intervals[room]) - 1
        self.received[(room, sender)].append((frame["body"]["n"], interval))
        self.latencies.append(time.time() - frame["body"]["t"])

    async def request(self, **fields: Any) -> dict[str, Any]:
        assert self.ws is not None
        ref = next(self.refs)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[ref] = future
        self.ws.send_text(msgspec.json.encode({**fields, "ref": ref}))
        try:
            return await asyncio.wait_for(future, REPLY_SECONDS)
        except TimeoutError:
            self.violations.add("no reply", (self.session, fields))
            return {"type": "error", "code": "no reply"}

    async def join(self, room: str) -> None:
        interval = Interval(join_sent=time.monotonic())
        self.intervals[room].append(interval)
        self.state[room] = "joining"
        reply = await self.request(type="join", room=room)
        if reply["type"] == "ok":
            interval.join_ok = time.monotonic()
            self.state[room] = "in"
        else:
            self.violations.add(f"join: {reply['code']}", reply)
            self.state[room] = "out"

    async def leave(self, room: str) -> None:
        interval = self.intervals[room][-1]
        interval.leave_sent = time.monotonic()
        self.state[room] = "leaving"
        reply = await self.request(type="leave", room=room)
        if reply["type"] != "ok":
            self.violations.add(f"leave: {reply['code']}", reply)
        interval.leave_ok = time.monotonic()
        self.state[room] = "out"

    async def say(self, room: str) -> None:
        n = self.seq[room]
        self.seq[room] += 1
        said = Said(room, n, time.monotonic())
        self.said.append(said)
        reply = await self.request(type="say", room=room, body={"n": n, "t": time.time()})
        if reply["type"] == "ok":
            said.ok_at = time.monotonic()
        else:
            said.code = reply["code"]
            self.violations.add(f"say: {said.code}", reply)

    def rooms_in(self) -> list[str]:
        return [room for room, state in self.state.items() if state == "in"]

    async def churn(self, rooms: list[str], until: float, rng: random.Random) -> None:
        """Say, leave and join at random until ``until`` (monotonic)."""
        while True:
            pause = min(rng.expovariate(1 / MEAN_PAUSE), until - time.monotonic())
            await asyncio.sleep(max(pause, 0.0))  # think time
            if time.monotonic() >= until or self.closed is not None:
                return
            mine = self.rooms_in()
            roll = rng.random()
            if roll < 0.7 and mine:
                await self.say(rng.choice(mine))
            elif roll < 0.85 and len(mine) > 1:
                await self.leave(rng.choice(mine))
            elif len(mine) < 3:
                await self.join(rng.choice([r for r in rooms if r not in mine]))
            else:
                await self.leave(rng.choice(mine))


def check_deliveries(members: list[Member], violations: Violations) -> dict[str, int]:
    """Check every say against every membership interval of its room."""
    intervals_by_room: dict[str, list[tuple[Member, int, Interval]]] = defaultdict(list)
    for member in members:
        for room, intervals in member.intervals.items():
            for index, interval in enumerate(intervals):
                if interval.join_ok is not None:
                    intervals_by_room[room].append((member, index, interval))
    received: dict[tuple[int, str, str], set[tuple[int, int]]] = {}
    latest: dict[tuple[int, str, str, int], int] = {}
    deliveries = 0
    for member in members:
        for (room, sender_session), arrivals in member.received.items():
            deliveries += len(arrivals)
            numbers = [n for n, _ in arrivals]
            if len(set(numbers)) != len(numbers):
                violations.add("duplicate", (member.session, room, sender_session))
            if numbers != sorted(numbers):
                violations.add("out of order", (member.session, room, sender_session, numbers[:20]))
            received[(member.index, room, sender_session)] = set(arrivals)
            for n, interval_index in arrivals:
                key = (member.index, room, sender_session, interval_index)
                latest[key] = max(latest.get(key, -1), n)
    must = 0
    for sender in members:
        for said in sender.said:
            if said.ok_at is None:
                continue
            for receiver, index, interval in intervals_by_room[said.room]:
                if receiver is sender:
                    continue
                assert interval.join_ok is not None
                if interval.join_ok > said.sent:
                    continue
                if interval.leave_sent is not None and said.ok_at > interval.leave_sent:
                    continue
                later = latest.get((receiver.index, said.room, sender.session, index), -1)
                stayed = (
                    interval.leave_sent is None
                    or said.ok_at + TAIL_SECONDS <= interval.leave_sent
                    or later > said.n
                )
                if not stayed:
                    continue
                must += 1
                got = received.get((receiver.index, said.room, sender.session), set())
                if (said.n, index) not in got:
                    violations.add("lost", (sender.session, receiver.session, said))
    return {"deliveries": deliveries, "deliveries_required": must}


async def soak(nodes: list[BrokerProcess]) -> dict[str, Any]:
    rng = random.Random(20_000)
    violations = Violations()
    rooms = [f"soak-{i}" for i in range(ROOMS)]
    members = [Member(i, violations) for i in range(CLIENTS)]
    started = time.monotonic()
    semaphore = asyncio.Semaphore(100)  # handshakes in flight

    async def connect(member: Member) -> None:
        async with semaphore:
            await member.connect(nodes[member.index % len(nodes)].url)
            for room in rng.sample(rooms, rng.randint(1, 2)):
                await member.join(room)

    await asyncio.gather(*(connect(member) for member in members))
    setup = time.monotonic() - started
    until = time.monotonic() + CHURN_SECONDS
    churning = [
        asyncio.create_task(member.churn(rooms, until, random.Random(rng.random())))
        for member in members
    ]
    await asyncio.sleep(WARM_UP_SECONDS)  # let memory reach its working size
    pids = [node.process.pid for node in nodes if node.process is not None]
    warm = [rss_bytes(pid) for pid in pids]
    peak = list(warm)
    while not all(task.done() for task in churning):
        await asyncio.wait(churning, timeout=1.0)  # sample memory every second meanwhile
        peak = [max(p, rss_bytes(pid)) for p, pid in zip(peak, pids, strict=True)]
    for task in churning:
        task.result()
    await settle(members)
    end = [rss_bytes(pid) for pid in pids]
    for member in members:
        if member.closed is not None:
            violations.add("closed by the node", (member.session, member.closed))
        if member.ws is not None:
            member.ws.close()
    checked = time.monotonic()
    counts = check_deliveries(members, violations)
    check_seconds = time.monotonic() - checked
    latencies = sorted(x for member in members for x in member.latencies)
    return {
        "setup_seconds": round(setup, 1),
        "total_seconds": round(time.monotonic() - started, 1),
        "check_seconds": round(check_seconds, 1),
        "says": sum(len(member.said) for member in members),
        "joins": sum(len(i) for member in members for i in member.intervals.values()),
        "leaves": sum(
            i.leave_ok is not None for m in members for v in m.intervals.values() for i in v
        ),
        "membership_events": sum(member.events for member in members),
        **counts,
        "latency_p50": round(latencies[len(latencies) // 2], 4) if latencies else None,
        "latency_p99": round(latencies[int(len(latencies) * 0.99)], 4) if latencies else None,
        "latency_max": round(latencies[-1], 4) if latencies else None,
        "rss_warm_mib": [round(x / 2**20, 1) for x in warm],
        "rss_peak_mib": [round(x / 2**20, 1) for x in peak],
        "rss_end_mib": [round(x / 2**20, 1) for x in end],
        "rss_growth": [e - w for e, w in zip(peak, warm, strict=True)],
        "violations": dict(violations.counts),
        "examples": violations.examples,
    }


async def settle(members: list[Member]) -> None:
    """Wait until no message arrived for a second (bounded)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    last = -1
    while time.monotonic() < deadline:
        total = sum(len(a) for m in members for a in m.received.values())
        if total == last:
            return
        last = total
        await asyncio.sleep(1.0)  # a quiet second shows the deliveries are done


def test_two_thousand_churning_clients_lose_nothing_and_memory_stays_bounded(
    broker: BrokerFactory, redis_server: RedisServer
) -> None:
    nodes = [broker("--redis-url", redis_server.url, "--log-level", "WARNING") for _ in range(2)]

    result = run_async(soak(nodes))

    print("soak result:", {k: v for k, v in result.items() if k != "examples"})
    assert not result["violations"], result
    assert result["deliveries_required"] > 0
    growth = result.pop("rss_growth")
    assert all(g < RSS_GROWTH_BOUND for g in growth), result
