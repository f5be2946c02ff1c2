"""Who connects where and who says what, per scenario (no I/O).

A plan is one :class:`~broker.bench.messages.Setup` per worker process.
Connections are spread over the target's nodes round-robin, and over the
workers round-robin, so every worker and every node carries an equal share.
In ``fanout`` the publisher gets a worker of its own: its replies would
otherwise wait behind hundreds of members' deliveries in the same event loop,
and the window would measure the load generator.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from broker.bench.messages import ConnSpec, RecoverySetup, Setup
from broker.bench.params import BenchParams

__all__ = ["PRESENCE_ROOM", "Plan", "make_plan", "recovery_setups"]

PRESENCE_ROOM = "bench-presence"
"""The one room of the ``presence`` scenario."""


@dataclass(frozen=True, slots=True)
class Plan:
    """The workers' setups and what the run offers.

    Attributes:
        setups: one per worker process.
        roles: ``publisher`` or ``members`` per worker, for the report.
        publishers: how many connections say messages.
        offered_says_per_s: the says per second the plan offers, None if unpaced.
        offered_deliveries_per_s: the deliveries per second it offers, None if unpaced.
    """

    setups: list[Setup]
    roles: list[str]
    publishers: int
    offered_says_per_s: float | None
    offered_deliveries_per_s: float | None


def make_plan(
    params: BenchParams, urls: tuple[str, ...], sources: Sequence[str | None] = (None,)
) -> Plan:
    """The plan of ``params.scenario`` against the nodes at ``urls``; the
    connections come from ``sources`` round-robin (None: the kernel's choice;
    see :func:`broker.bench.limits.source_addresses`)."""
    match params.scenario:
        case "fanout":
            plan = _fanout(params, urls)
        case "chat":
            plan = _chat(params, urls)
        case "idle":
            plan = _rooms_of(params, urls, warm_up=True)
        case "connect":
            plan = _rooms_of(params, urls, warm_up=False)
        case "presence":
            plan = _presence(params, urls)
        case "recovery":
            raise ValueError("recovery has a plan of its own: recovery_setups()")
    _spread_sources(plan.setups, sources)
    return plan


def _spread_sources(setups: list[Setup], sources: Sequence[str | None]) -> None:
    """Give the connections their source addresses round-robin, across workers,
    so every source carries an equal share of every node's connections."""
    if len(sources) == 1 and sources[0] is None:
        return
    index = 0
    for setup in setups:
        for spec in setup.conns:
            spec.source = sources[index % len(sources)]
            index += 1


def recovery_setups(params: BenchParams, url: str) -> list[RecoverySetup]:
    """Every client of ``recovery`` on the node at ``url`` (the one to be
    killed), spread round-robin over ``params.rooms`` rooms and the workers."""
    conns = [ConnSpec(url, f"bench-recovery-{i % params.rooms}") for i in range(params.connections)]
    return [
        RecoverySetup(conns=group, concurrency=params.connect_concurrency)
        for group in _split(conns, params.worker_count())
    ]


def _setups(
    params: BenchParams,
    groups: list[list[ConnSpec]],
    publishers: dict[str, list[int]],
    messages: int,
    rate: float | None,
) -> list[Setup]:
    total = sum(len(group) for group in groups)
    return [
        Setup(
            conns=group,
            publishers=publishers,
            messages=messages,
            window=params.window,
            rate=rate,
            body_size=params.body_size,
            concurrency=params.connect_concurrency,
            # The overall rate, shared by the workers in proportion to their connections.
            connect_rate=(
                params.connect_rate * len(group) / total if params.connect_rate else None
            ),
        )
        for group in groups
    ]


def _split(conns: list[ConnSpec], workers: int) -> list[list[ConnSpec]]:
    return [conns[i::workers] for i in range(workers) if conns[i::workers]]


def _fanout(params: BenchParams, urls: tuple[str, ...]) -> Plan:
    room = "bench-fanout"
    publisher = ConnSpec(urls[0], room, pub=0)
    members = [ConnSpec(urls[i % len(urls)], room) for i in range(params.members)]
    # --rate is offered deliveries per second; each say makes `members` deliveries.
    says_rate = params.rate / params.members if params.rate else None
    groups = [[publisher], *_split(members, params.worker_count())]
    setups = _setups(params, groups, {room: [0]}, params.messages, says_rate)
    roles = ["publisher"] + ["members"] * (len(groups) - 1)
    return Plan(setups, roles, 1, says_rate, params.rate)


def _chat(params: BenchParams, urls: tuple[str, ...]) -> Plan:
    # Each member starts at a random phase of its period, so the says of a
    # room do not arrive in synchronised bursts (seeded: runs are repeatable).
    rng = random.Random(params.seed)
    period = 1.0 / params.say_rate
    conns, publishers = [], {}
    for r in range(params.rooms):
        room = f"bench-chat-{r}"
        ids = list(range(r * params.room_size, (r + 1) * params.room_size))
        publishers[room] = ids
        conns += [ConnSpec(urls[i % len(urls)], room, i, rng.uniform(0, period)) for i in ids]
    groups = _split(conns, params.worker_count())
    setups = _setups(params, groups, publishers, params.messages, params.say_rate)
    says = len(conns) * params.say_rate
    deliveries = says * (params.room_size - 1)
    return Plan(setups, ["members"] * len(groups), len(conns), says, deliveries)


def _rooms_of(params: BenchParams, urls: tuple[str, ...], warm_up: bool) -> Plan:
    """N connections in rooms of ``room_size``; with ``warm_up`` the first
    member of each room says one message (the quiet-sockets marker) and
    nothing else (``messages`` is 0)."""
    conns, publishers = [], {}
    for i in range(params.connections):
        room = f"bench-room-{i // params.room_size}"
        first = i % params.room_size == 0
        pub = i if warm_up and first else None
        if pub is not None:
            publishers[room] = [pub]
        conns.append(ConnSpec(urls[i % len(urls)], room, pub))
    groups = _split(conns, params.worker_count())
    setups = _setups(params, groups, publishers, 0, None)
    return Plan(setups, ["members"] * len(groups), len(publishers), None, None)


def _presence(params: BenchParams, urls: tuple[str, ...]) -> Plan:
    """``members`` connections in one room, round-robin over the nodes; the
    first says the warm-up (after it, the room is quiet) and nothing else.
    The asker, the one connection more, lives in the coordinator
    (:mod:`broker.bench.presence`)."""
    conns = [
        ConnSpec(urls[i % len(urls)], PRESENCE_ROOM, 0 if i == 0 else None)
        for i in range(params.members)
    ]
    groups = _split(conns, params.worker_count())
    setups = _setups(params, groups, {PRESENCE_ROOM: [0]}, 0, None)
    return Plan(setups, ["members"] * len(groups), 1, None, None)
