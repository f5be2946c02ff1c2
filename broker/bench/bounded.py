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

__all__ = ["CONNECT_TIMEOUT", "Bounded", "Job", "connect_all", "own_cpu_seconds", "run_bounded"]

Job = tuple[str, Callable[[], Awaitable[int | None]]]
"""Where a job connects (for its error message), and the job itself."""

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
        first_ns: when the batch started (``time.monotonic_ns()``).
        last_ns: when the last job that returned a time ended (``first_ns`` if none did).
    """

    hist: Histogram = field(default_factory=Histogram)
    done: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    first_ns: int = 0
    last_ns: int = 0


async def run_bounded(jobs: Sequence[Job], concurrency: int, each_within: float) -> Bounded:
    """Run ``jobs``, at most ``concurrency`` at once, each within ``each_within`` s."""
    gate = asyncio.Semaphore(max(1, concurrency))
    batch = Bounded(first_ns=time.monotonic_ns())
    batch.last_ns = batch.first_ns

    async def one(url: str, job: Callable[[], Awaitable[int | None]]) -> None:
        async with gate:
            try:
                async with asyncio.timeout(each_within):
                    took = await job()
            except (OSError, RuntimeError, TimeoutError, HandshakeError) as exc:
                # ConnectionError is an OSError.
                batch.failed += 1
                if len(batch.errors) < _KEPT_ERRORS:
                    batch.errors.append(f"{url}: {type(exc).__name__}: {exc}")
                return
        batch.done += 1
        if took is not None:
            batch.hist.record(took // 1000)
            batch.last_ns = time.monotonic_ns()

    await asyncio.gather(*(one(url, job) for url, job in jobs))
    return batch


async def connect_all(jobs: list[Job], concurrency: int) -> Connected:
    """Run the connect-and-join ``jobs``; report them as :class:`Connected`."""
    cpu = own_cpu_seconds()
    batch = await run_bounded(jobs, concurrency, CONNECT_TIMEOUT)
    return Connected(
        joined=batch.done,
        failed=batch.failed,
        errors=batch.errors,
        hist=batch.hist.to_sparse(),
        hist_total=batch.hist.total,
        hist_max=batch.hist.max,
        first_ns=batch.first_ns,
        last_ns=batch.last_ns,
        cpu_s=own_cpu_seconds() - cpu,
    )
