"""The ``recovery`` scenario: a recovery storm after a node is killed.

The phases (docs/HISTORY-PRESENCE.md, "Recovery: join with since"):

1. A publisher (:class:`~broker.bench.recovery_speaker.Speaker`) joins every
   room on node B (the second node).
2. ``--connections`` clients join the rooms on node A (the first node), in
   worker processes (:mod:`broker.bench.recovery_worker`).
3. The publisher says one message per room; every client waits until it saw
   it, so that each stands at a real position in its room.
4. Node A is SIGKILLed. While its clients are away (they only notice the
   closed connection), the publisher says ``--gap`` messages per room
   through node B.
5. Every client reconnects to node B and joins with ``since`` = its last
   position. It is recovered when the ``ok`` says ``recovered: true`` after
   exactly the missing offsets, in order.

Reported: how many clients were recovered, and the time from the kill to
the last recovered ``ok``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

from broker.bench.bounded import CONNECT_TIMEOUT
from broker.bench.measure import recovery_metrics
from broker.bench.messages import (
    Await,
    Connect,
    Connected,
    Drop,
    Dropped,
    Reached,
    Recover,
    Recovered,
)
from broker.bench.outcome import Outcome, Progress
from broker.bench.params import BenchParams
from broker.bench.plans import recovery_setups
from broker.bench.processes import Children
from broker.bench.procfs import cpu_since, total_cpu_seconds
from broker.bench.recovery_speaker import Speaker
from broker.bench.targets import Target
from broker.bench.workers import WorkerPool

__all__ = ["run_recovery"]

_PROBLEM_DETAIL = 800  # characters of error messages kept in a problem line


async def run_recovery(
    params: BenchParams, target: Target, children: Children, progress: Progress
) -> Outcome:
    """Run the phases against ``target`` (at least two spawned nodes on Redis).

    Raises:
        RuntimeError: the target cannot be killed (not spawned, one node), or
            the publisher failed.
    """
    if not target.spawned or len(target.urls) < 2:
        raise RuntimeError("recovery needs at least 2 spawned nodes on Redis")
    outcome = Outcome(target)
    rooms = [f"bench-recovery-{r}" for r in range(params.rooms)]
    progress.phase = f"{target.name}: the publisher joins {len(rooms)} rooms on node 1"
    async with asyncio.timeout(CONNECT_TIMEOUT):
        speaker = await Speaker.open(target.urls[1], rooms)
    try:
        setups = recovery_setups(params, target.urls[0])
        progress.phase = f"{target.name}: starting {len(setups)} worker processes"
        pool = await WorkerPool.start(children, setups)
        try:
            recovered = await _storm(params, target, speaker, pool, outcome, progress)
            if recovered is not None:
                outcome.workers = [
                    {"pid": pid, "role": "clients", "connections": len(s.conns), "cpu_percent": b}
                    for pid, s, b in zip(pool.pids, setups, map(_busy, recovered), strict=True)
                ]
                _check(outcome, recovered)
        finally:
            await pool.close()
    finally:
        speaker.close()
    return outcome


async def _storm(
    params: BenchParams,
    target: Target,
    speaker: Speaker,
    pool: WorkerPool,
    outcome: Outcome,
    progress: Progress,
) -> list[Recovered] | None:
    """Phases 2 to 5; the workers' reports of the rejoin (None: stopped early)."""
    progress.phase = f"{target.name}: {params.connections} clients join on node 0"
    connected = await pool.each(Connect(), Connected)
    failed = sum(c.failed for c in connected)
    if failed:
        errors = "; ".join(e for c in connected for e in c.errors)[:_PROBLEM_DETAIL]
        outcome.problems.append(f"{failed} clients failed to connect or join: {errors}")
        return None
    outcome.metrics["setup_s"] = round(
        (max(c.last_ns for c in connected) - min(c.first_ns for c in connected)) / 1e9, 3
    )
    progress.phase = f"{target.name}: one message per room before the kill"
    async with asyncio.timeout(CONNECT_TIMEOUT):
        before = await speaker.say_each(1)
    behind = sum(r.behind for r in await pool.each(Await(positions=before), Reached))
    if behind:
        outcome.problems.append(f"{behind} clients never received the message before the kill")
        return None
    survivors = target.server_pids[1:]
    redis_pids = target.redis_pids
    cpu_before = total_cpu_seconds(survivors)
    redis_before = total_cpu_seconds(redis_pids)
    progress.phase = f"{target.name}: node 0 killed, saying the gap through node 1"
    kill_ns = time.monotonic_ns()
    os.kill(target.server_pids[0], signal.SIGKILL)
    # Bounded: the workers give up on a drop after DROP_TIMEOUT, the gap is
    # said within CONNECT_TIMEOUT, and --timeout bounds the whole run.
    async with asyncio.timeout(CONNECT_TIMEOUT):
        dropped, after = await asyncio.gather(
            pool.each(Drop(), Dropped), speaker.say_each(params.gap)
        )
    gap_said_ns = time.monotonic_ns()
    progress.phase = f"{target.name}: {params.connections} clients rejoin on node 1"
    command = Recover(url=target.urls[1], kill_ns=kill_ns, positions=after)
    recovered = await pool.each(command, Recovered)
    outcome.metrics |= recovery_metrics(
        params,
        kill_ns,
        gap_said_ns,
        dropped,
        recovered,
        cpu_since(cpu_before, survivors),
        cpu_since(redis_before, redis_pids),
    )
    still_open = sum(d.still_open for d in dropped)
    if still_open:
        outcome.problems.append(f"{still_open} connections stayed open after their node was killed")
    return recovered


def _busy(report: Recovered) -> float:
    seconds = (report.last_ns - report.first_ns) / 1e9
    return round(100.0 * report.cpu_s / seconds, 1) if seconds > 0 else 0.0


def _check(outcome: Outcome, recovered: list[Recovered]) -> None:
    m = outcome.metrics
    for key in ("not_recovered", "wrong", "failed"):
        if m[key]:
            outcome.problems.append(f"{key.replace('_', ' ')}: {m[key]} clients")
    if m["replayed"] != m["expected_replayed"]:
        outcome.problems.append(
            f"replayed {m['replayed']} messages, expected {m['expected_replayed']}"
        )
    # Each worker keeps its first few failures; the same failure once is enough.
    errors = "; ".join(dict.fromkeys(e for r in recovered for e in r.errors))[:_PROBLEM_DETAIL]
    if errors:
        outcome.problems.append(f"rejoin failures: {errors}")
