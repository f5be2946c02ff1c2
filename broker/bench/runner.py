"""One benchmark run: start what is needed, drive the phases, measure.

The phases of every scenario (the workers' side is in
:mod:`broker.bench.worker`): start the targets and the workers; connect and
join every connection; say the warm-up messages until every member heard
them (so the ``joined`` storm of the setup is over); then the measured part:
``Go`` for ``fanout`` and ``chat``, the memory reading for ``idle``, or, for
``connect``, the connecting itself. ``recovery`` and ``presence`` have
phases of their own (:mod:`broker.bench.recovery`, :mod:`broker.bench.presence`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import time
from typing import Any

from broker.bench.advice import short_window_warning
from broker.bench.limits import source_addresses
from broker.bench.machine import describe_machine
from broker.bench.measure import connect_metrics, delivery_metrics
from broker.bench.messages import Connect, Connected, Result, Warm, Warmed
from broker.bench.outcome import Outcome, Progress
from broker.bench.params import BenchParams
from broker.bench.plans import Plan, make_plan
from broker.bench.presence import run_presence
from broker.bench.processes import Children
from broker.bench.procfs import (
    cpu_seconds,
    cpu_since,
    process_tree,
    total_cpu_seconds,
    tree_rss_bytes,
    tree_rss_each,
)
from broker.bench.recovery import run_recovery
from broker.bench.shards import ShardProbe, shard_warnings
from broker.bench.targets import Target, given_target, spawn_roomcast, spawn_textbook
from broker.bench.workers import WorkerPool

__all__ = ["BUSY_PERCENT", "COMPARED", "Outcome", "Progress", "run_bench"]

BUSY_PERCENT = 60.0
"""A worker busier than this may be what limits the result."""

COMPARED: dict[str, tuple[str, ...]] = {
    "fanout": ("deliveries_per_s", "server_cpu_us_per_delivery", "latency_us.p99"),
    "chat": ("deliveries_per_s", "server_cpu_us_per_delivery", "latency_us.p99"),
    "idle": ("rss_per_connection_bytes",),
    "connect": ("connections_per_s", "server_cpu_us_per_connection", "time_to_joined_us.p99"),
    "recovery": (),
    "presence": (),
}
"""Metrics set side by side by ``--compare`` (ratio: roomcast ÷ baseline)."""

_START_DELAY_NS = 100_000_000  # lets every worker see Go before the first say is due


def _total_rss(pids: tuple[int, ...]) -> int | None:
    return sum(tree_rss_bytes(pid) for pid in pids) if pids else None


async def _start_target(
    params: BenchParams, name: str, children: Children, progress: Progress
) -> Target:
    progress.phase = f"{name}: starting the servers"
    if name == "textbook":
        return await spawn_textbook(children)
    if params.spawn:
        target = await spawn_roomcast(
            children,
            params.nodes,
            params.redis_url,
            params.spawn_redis,
            params.server_args,
            params.history_size,
            params.cluster_masters if params.spawn_redis_cluster else None,
            params.workers,
        )
    else:
        target = given_target(list(params.urls), list(params.server_pids))
    if params.redis_pid is not None:
        target = dataclasses.replace(target, redis_pid=params.redis_pid)
    return target


def _worker_rows(plan: Plan, pool: WorkerPool, busy: list[float]) -> list[dict[str, Any]]:
    return [
        {"pid": pid, "role": role, "connections": len(setup.conns), "cpu_percent": round(b, 1)}
        for pid, role, setup, b in zip(pool.pids, plan.roles, plan.setups, busy, strict=True)
    ]


def _check_busy(outcome: Outcome) -> None:
    for row in outcome.workers:
        if row["cpu_percent"] > BUSY_PERCENT:
            outcome.warnings.append(
                f"worker {row['pid']} ({row['role']}) was {row['cpu_percent']} % busy: "
                "the load generator may limit this result (raise --clients-procs)"
            )


def _check_window(params: BenchParams, outcome: Outcome) -> None:
    warning = short_window_warning(params, outcome.metrics)
    if warning is not None:
        outcome.warnings.append(warning)


def _check_counts(outcome: Outcome) -> None:
    m = outcome.metrics
    for key in (
        "missing",
        "duplicates",
        "out_of_order",
        "unexpected",
        "offset_gaps",
        "offset_backwards",
        "epoch_changes",
        "closed_connections",
    ):
        if m.get(key):
            outcome.problems.append(f"{key.replace('_', ' ')}: {m[key]}")
    if m.get("errors"):
        outcome.problems.append(f"error replies: {m['errors']}")


async def _run_target(
    params: BenchParams, target: Target, children: Children, progress: Progress
) -> Outcome:
    if params.scenario == "recovery":
        return await run_recovery(params, target, children, progress)
    if params.scenario == "presence":
        return await run_presence(params, target, children, progress)
    name = target.name
    outcome = Outcome(target)
    per_destination = -(-params.connection_count() // len(target.urls))
    sources = source_addresses(params.source_addresses, per_destination)
    plan = make_plan(params, target.urls, sources)
    outcome.metrics["source_addresses"] = [s for s in sources if s is not None]
    progress.phase = f"{name}: starting {len(plan.setups)} worker processes"
    pool = await WorkerPool.start(children, plan.setups)
    try:
        return await _phases(params, target, plan, pool, outcome, progress)
    finally:
        await pool.close()


async def _phases(
    params: BenchParams,
    target: Target,
    plan: Plan,
    pool: WorkerPool,
    outcome: Outcome,
    progress: Progress,
) -> Outcome:
    rss_before = _total_rss(target.server_pids)
    connected = await _connect(params, target, plan, pool, outcome, progress)
    if params.scenario == "connect" or outcome.problems:
        return outcome
    outcome.metrics["setup_s"] = round(_span_s(connected), 3)
    if _span_s(connected) > 0:
        joined = sum(c.joined for c in connected)
        outcome.metrics["connections_per_s"] = round(joined / _span_s(connected), 1)
    if plan.publishers:
        progress.phase = f"{target.name}: warm-up (waiting for the join storm to settle)"
        lost = sum(w.missing for w in await pool.each(Warm(), Warmed))
        if lost:
            outcome.problems.append(f"{lost} warm-up messages never arrived")
            return outcome
    if params.scenario == "idle":
        _idle_metrics(params, target, rss_before, outcome)
        if params.idle_seconds > 0:
            progress.phase = f"{target.name}: idling {params.idle_seconds:g} s"
            await _idle_cpu(params, target, outcome)
    else:
        await _measure_deliveries(params, target, plan, pool, outcome, progress)
    return outcome


def _span_s(connected: list[Connected]) -> float:
    return (max(c.last_ns for c in connected) - min(c.first_ns for c in connected)) / 1e9


async def _connect(
    params: BenchParams,
    target: Target,
    plan: Plan,
    pool: WorkerPool,
    outcome: Outcome,
    progress: Progress,
) -> list[Connected]:
    """Open and join every connection; the measurement of ``connect``."""
    progress.phase = f"{target.name}: connecting {params.connection_count()} clients"
    cpu_before = total_cpu_seconds(target.server_pids)
    connected = await pool.each(Connect(), Connected)
    server_cpu = cpu_since(cpu_before, target.server_pids)
    failed = sum(c.failed for c in connected)
    limits = sorted({c.limit for c in connected if c.limit is not None})
    for limit in limits:
        # One line per limit, before the detail: what stopped the run.
        outcome.problems.append(f"limit met: {limit}")
    if failed:
        errors = "; ".join(e for c in connected for e in c.errors)[:800]
        outcome.problems.append(f"{failed} connections failed to connect or join: {errors}")
    seconds = _span_s(connected)
    busy = [100.0 * c.cpu_s / seconds if seconds > 0 else 0.0 for c in connected]
    outcome.workers = _worker_rows(plan, pool, busy)
    if params.scenario == "connect":
        outcome.metrics = connect_metrics(connected, server_cpu)
        _check_busy(outcome)
        _check_window(params, outcome)
    return connected


async def _measure_deliveries(
    params: BenchParams,
    target: Target,
    plan: Plan,
    pool: WorkerPool,
    outcome: Outcome,
    progress: Progress,
) -> None:
    """``Go``, and the numbers of ``fanout`` and ``chat``."""
    progress.phase = f"{target.name}: measuring"
    cpu_before = total_cpu_seconds(target.server_pids)
    redis_pids = target.redis_pids
    shards = ShardProbe.of(target, plan)
    redis_before = total_cpu_seconds(redis_pids)
    results: list[Result] = await pool.run(time.monotonic_ns() + _START_DELAY_NS, params.drain)
    server_cpu = cpu_since(cpu_before, target.server_pids)
    redis_cpu = cpu_since(redis_before, redis_pids)
    outcome.metrics |= delivery_metrics(
        results, server_cpu, plan.offered_says_per_s, plan.offered_deliveries_per_s, redis_cpu
    )
    if shards is not None:
        outcome.metrics["shards"] = shards.finish()
        outcome.warnings += shard_warnings(outcome.metrics["shards"])
    busy = [100.0 * r.cpu_s / r.wall_s if r.wall_s else 0.0 for r in results]
    outcome.workers = _worker_rows(plan, pool, busy)
    _check_counts(outcome)
    _check_busy(outcome)
    _check_window(params, outcome)


def _idle_metrics(
    params: BenchParams, target: Target, rss_before: int | None, outcome: Outcome
) -> None:
    rss_after = _total_rss(target.server_pids)
    per_conn = None
    if rss_before is not None and rss_after is not None:
        per_conn = round((rss_after - rss_before) / params.connections, 1)
    else:
        outcome.warnings.append("no server PID: give --spawn or --server-pid to measure RSS")
    outcome.metrics |= {
        "connections": params.connections,
        "rooms": -(-params.connections // params.room_size),
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "rss_per_connection_bytes": per_conn,
    }


async def _idle_cpu(params: BenchParams, target: Target, outcome: Outcome) -> None:
    """The server's CPU while every connection idles for ``idle_seconds``, as
    % of one core: the keepalive (and, on Redis, the nodes' heartbeats) is
    all that runs. Per process too: ``serve --workers N`` is a tree."""
    if not target.server_pids:
        outcome.warnings.append("no server PID: give --spawn or --server-pid to measure CPU")
        return
    pids = [pid for root in target.server_pids for pid in process_tree(root)]
    before = {pid: _cpu_or_none(pid) for pid in pids}
    cpu_before = total_cpu_seconds(target.server_pids)
    redis_before = total_cpu_seconds(target.redis_pids)
    started = time.monotonic()
    await asyncio.sleep(params.idle_seconds)
    seconds = time.monotonic() - started
    cpu = cpu_since(cpu_before, target.server_pids)
    redis_cpu = cpu_since(redis_before, target.redis_pids)
    assert cpu is not None
    rss = {pid: size for root in target.server_pids for pid, size in tree_rss_each(root)}
    processes = []
    for pid in pids:
        start, end = before[pid], _cpu_or_none(pid)
        busy = None if start is None or end is None else round(100.0 * (end - start) / seconds, 2)
        processes.append({"pid": pid, "rss_bytes": rss.get(pid), "idle_cpu_percent": busy})
    outcome.metrics |= {
        "idle_seconds": round(seconds, 3),
        "idle_server_cpu_s": round(cpu, 3),
        "idle_cpu_percent_of_core": round(100.0 * cpu / seconds, 2),
        "idle_redis_cpu_percent_of_core": (
            None if redis_cpu is None else round(100.0 * redis_cpu / seconds, 2)
        ),
        "server_processes": processes,
    }


def _cpu_or_none(pid: int) -> float | None:
    try:
        return cpu_seconds(pid)
    except OSError:
        return None


async def run_bench(params: BenchParams, children: Children, progress: Progress) -> dict[str, Any]:
    """Run ``params`` against each target in turn; return the run's record.

    Every process started goes into ``children``; the caller ends them (this
    function also ends each target's processes before starting the next, so
    a comparison never runs two servers at once).
    """
    started = time.monotonic()
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    names = ["roomcast"] + ([params.compare] if params.compare else [])
    outcomes = []
    for name in names:
        try:
            target = await _start_target(params, name, children, progress)
            outcomes.append(await _run_target(params, target, children, progress))
        finally:
            children.end_all()
    return {
        "tool": "broker bench",
        "record_version": 1,
        "scenario": params.scenario,
        "started_at": started_at,
        "elapsed_s": round(time.monotonic() - started, 3),
        "machine": describe_machine(),
        "params": params.as_record(),
        "results": [o.record() for o in outcomes],
        "comparison": _compare(params, outcomes),
        "ok": all(o.ok for o in outcomes),
    }


def _metric(metrics: dict[str, Any], path: str) -> float | None:
    value: Any = metrics
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, int | float) else None


def _compare(params: BenchParams, outcomes: list[Outcome]) -> dict[str, Any] | None:
    if len(outcomes) < 2:
        return None
    ours, base = outcomes[0], outcomes[1]
    table: dict[str, Any] = {"baseline": base.target.name}
    for path in COMPARED[params.scenario]:
        a, b = _metric(ours.metrics, path), _metric(base.metrics, path)
        ratio = round(a / b, 3) if a is not None and b else None
        table[path] = {ours.target.name: a, base.target.name: b, "ratio": ratio}
    return table
