"""Many connection jobs of one worker, a bounded number at a time.

A job opens (or reopens) one connection and returns the time to record for
it, in ns (or None: done, nothing to record); a job that fails (refused,
reset, timed out) is counted and a few of its messages are kept for the
report. Used by connecting and joining
(:mod:`broker.bench.worker`) and by rejoining after a kill
(:mod:`broker.bench.recovery_worker`).
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from broker.bench.histogram import Histogram
from broker.bench.messages import Connected
from broker.bench.wsclient import HandshakeError

__all__ = [
    "CONNECT_TIMEOUT",
    "Bounded",
    "Job",
    "LimitOf",
    "connect_all",
    "not_connected",
    "own_cpu_seconds",
    "run_bounded",
]

Job = tuple[str, Callable[[], Awaitable[int | None]]]
"""Where a job connects (for its error message), and the job itself."""

LimitOf = Callable[[BaseException, str], str | None]
"""The limit a job's failure met (one line), or None: an ordinary failure."""

CONNECT_TIMEOUT = 30.0
"""Seconds one connection may take to connect and join (or to rejoin)."""

_KEPT_ERRORS = 5


def own_cpu_seconds() -> float:
    """User plus system CPU seconds of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Bounded:
    """What a batch of jobs did.

    Attributes:
        hist: what the jobs that succeeded returned (when not None), in µs.
        done: jobs that succeeded.
        failed: jobs that raised.
        errors: the first few failures, as ``url: Type: message``.
        limit: the first limit met (see :mod:`broker.bench.limits`); the jobs
            not started after it count as failed.
        first_ns: when the batch started (``time.monotonic_ns()``).
        last_ns: when the last job that returned a time ended (``first_ns`` if none did).
    """

    hist: Histogram = field(default_factory=Histogram)
    done: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    limit: str | None = None
    first_ns: int = 0
    last_ns: int = 0


async def run_bounded(
    jobs: Sequence[Job],
    concurrency: int,
    each_within: float,
    rate: float | None = None,
    limit_of: LimitOf | None = None,
) -> Bounded:
    """Run ``jobs``, at most ``concurrency`` at once, each within ``each_within`` s.

    ``rate`` (jobs per second) paces the starts: job ``i`` starts no earlier
    than ``i / rate`` s after the first. Once ``limit_of`` names a limit in a
    failure, no further job starts (each would fail the same way).
    """
    gate = asyncio.Semaphore(max(1, concurrency))
    batch = Bounded(first_ns=time.monotonic_ns())
    batch.last_ns = batch.first_ns
    start = time.monotonic()

    async def one(index: int, url: str, job: Callable[[], Awaitable[int | None]]) -> None:
        if rate is not None:
            # A timer per pending job, not a task: the loop holds them cheaply.
            await asyncio.sleep(max(0.0, start + index / rate - time.monotonic()))
        async with gate:
            if batch.limit is not None:
                batch.failed += 1
                return
            try:
                async with asyncio.timeout(each_within):
                    took = await job()
            except (OSError, RuntimeError, TimeoutError, HandshakeError) as exc:
                # ConnectionError is an OSError.
                batch.failed += 1
                if len(batch.errors) < _KEPT_ERRORS:
                    batch.errors.append(f"{url}: {type(exc).__name__}: {exc}")
                if batch.limit is None and limit_of is not None:
                    batch.limit = limit_of(exc, url)
                return
        batch.done += 1
        if took is not None:
            batch.hist.record(took // 1000)
            batch.last_ns = time.monotonic_ns()

    await asyncio.gather(*(one(i, url, job) for i, (url, job) in enumerate(jobs)))
    return batch


async def connect_all(
    jobs: list[Job],
    concurrency: int,
    rate: float | None = None,
    limit_of: LimitOf | None = None,
) -> Connected:
    """Run the connect-and-join ``jobs``; report them as :class:`Connected`."""
    cpu = own_cpu_seconds()
    batch = await run_bounded(jobs, concurrency, CONNECT_TIMEOUT, rate, limit_of)
    return Connected(
        joined=batch.done,
        failed=batch.failed,
        errors=batch.errors,
        limit=batch.limit,
        hist=batch.hist.to_sparse(),
        hist_total=batch.hist.total,
        hist_max=batch.hist.max,
        first_ns=batch.first_ns,
        last_ns=batch.last_ns,
        cpu_s=own_cpu_seconds() - cpu,
    )


def not_connected(count: int, limit: str) -> Connected:
    """``count`` connections not even tried: ``limit`` stands in the way."""
    now = time.monotonic_ns()
    return Connected(
        joined=0,
        failed=count,
        errors=[],
        hist={},
        hist_total=0,
        hist_max=0,
        first_ns=now,
        last_ns=now,
        cpu_s=0.0,
        limit=limit,
    )
