"""The ``presence`` scenario: who is in a big, quiet room, asked again and again.

The phases (docs/HISTORY-PRESENCE.md, "Presence"; issue 13, "How it must
perform"):

1. The asker (:class:`~broker.bench.presence_asker.Asker`, in the
   coordinator) joins the room on node 0, first, so that its own ``joined``
   is not part of what follows.
2. ``--members`` connections join the room in worker processes, spread over
   the nodes round-robin, ``--connect-concurrency`` handshakes in flight per
   worker.
3. The first member says one warm-up message; every member and the asker
   wait until they heard it: the ``joined`` storm of step 2 is over and the
   room is quiet.
4. The asker asks ``presence`` ``--requests`` times, ``--in-flight`` at a
   time, and judges every reply against the room (every member and itself).

Reported: reply time p50/p99/p99.9/max, replies right / wrong / errors, and
the CPU of the nodes and of redis-server per request over step 4.
"""

from __future__ import annotations

import asyncio

from broker.bench.advice import short_window_warning
from broker.bench.bounded import CONNECT_TIMEOUT
from broker.bench.measure import presence_metrics
from broker.bench.messages import Connect, Connected, Warm, Warmed
from broker.bench.outcome import Outcome, Progress
from broker.bench.params import BenchParams
from broker.bench.plans import PRESENCE_ROOM, make_plan
from broker.bench.presence_asker import Asker
from broker.bench.processes import Children
from broker.bench.procfs import cpu_since, total_cpu_seconds
from broker.bench.targets import Target
from broker.bench.workers import WorkerPool

__all__ = ["run_presence"]

_PROBLEM_DETAIL = 800  # characters of error messages kept in a problem line


async def run_presence(
    params: BenchParams, target: Target, children: Children, progress: Progress
) -> Outcome:
    """Run the phases against ``target``.

    Raises:
        RuntimeError: the asker's join was refused.
        ConnectionError, OSError: the asker could not connect, or its
            connection closed.
    """
    outcome = Outcome(target)
    progress.phase = f"{target.name}: the asker joins {PRESENCE_ROOM} on node 0"
    async with asyncio.timeout(CONNECT_TIMEOUT):
        asker = await Asker.open(target.urls[0], PRESENCE_ROOM)
    try:
        plan = make_plan(params, target.urls)
        progress.phase = f"{target.name}: starting {len(plan.setups)} worker processes"
        pool = await WorkerPool.start(children, plan.setups)
        try:
            connected = await _fill(params, target, pool, asker, outcome, progress)
            # The workers idle while presence is asked: their load is the joining.
            outcome.workers = [
                {"pid": pid, "role": "members", "connections": len(s.conns), "cpu_percent": b}
                for pid, s, b in zip(pool.pids, plan.setups, _busy(connected), strict=True)
            ]
            if not outcome.problems:
                await _measure(params, target, asker, outcome, progress)
        finally:
            await pool.close()
    finally:
        asker.close()
    return outcome


async def _fill(
    params: BenchParams,
    target: Target,
    pool: WorkerPool,
    asker: Asker,
    outcome: Outcome,
    progress: Progress,
) -> list[Connected]:
    """Phases 2 and 3: the room is full and quiet unless a problem says why not."""
    progress.phase = f"{target.name}: {params.members} members join {PRESENCE_ROOM}"
    connected: list[Connected] = await pool.each(Connect(), Connected)
    failed = sum(c.failed for c in connected)
    if failed:
        errors = "; ".join(e for c in connected for e in c.errors)[:_PROBLEM_DETAIL]
        outcome.problems.append(f"{failed} members failed to connect or join: {errors}")
        return connected
    outcome.metrics["setup_s"] = round(_span_s(connected), 3)
    progress.phase = f"{target.name}: warm-up (waiting for the join storm to settle)"
    lost = sum(w.missing for w in await pool.each(Warm(), Warmed))
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await asker.wait_message()
    except TimeoutError:
        lost += 1
    if lost:
        outcome.problems.append(f"{lost} warm-up messages never arrived")
    return connected


def _span_s(connected: list[Connected]) -> float:
    return (max(c.last_ns for c in connected) - min(c.first_ns for c in connected)) / 1e9


def _busy(connected: list[Connected]) -> list[float]:
    """Each worker's CPU % over the joining."""
    seconds = _span_s(connected)
    return [round(100.0 * c.cpu_s / seconds, 1) if seconds > 0 else 0.0 for c in connected]


async def _measure(
    params: BenchParams, target: Target, asker: Asker, outcome: Outcome, progress: Progress
) -> None:
    """Phase 4 and its numbers."""
    progress.phase = f"{target.name}: asking presence {params.requests} times"
    redis_pids = target.redis_pids
    cpu_before = total_cpu_seconds(target.server_pids)
    redis_before = total_cpu_seconds(redis_pids)
    # Bounded by --timeout, and by the asker's connection: a close ends it.
    asked = await asker.ask(params.requests, params.in_flight, params.members + 1)
    outcome.metrics |= presence_metrics(
        params,
        asked,
        cpu_since(cpu_before, target.server_pids),
        cpu_since(redis_before, redis_pids),
    )
    m = outcome.metrics
    if m["wrong"]:
        outcome.problems.append(
            f"{m['wrong']} presence replies did not tell the whole room of {m['members']}"
        )
    if m["errors"]:
        outcome.problems.append(f"error replies: {m['errors']}")
    warning = short_window_warning(params, m)
    if warning is not None:
        outcome.warnings.append(warning)
