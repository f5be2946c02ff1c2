"""What the reliability tests observe from outside a node: its metrics, its
health, its memory, its child processes, and waits bounded by a deadline."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import BrokerProcess, http_get

__all__ = [
    "Metrics",
    "children",
    "eventually",
    "health",
    "rss_bytes",
    "scrape",
]


class Metrics:
    """One scrape of ``/metrics``, parsed as Prometheus text."""

    def __init__(self, text: str) -> None:
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        self.types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.types[sample.name] = family.type
                key = (sample.name, frozenset(sample.labels.items()))
                self.samples[key] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """The value of sample ``name`` with exactly these labels (0 if absent)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def names(self) -> set[str]:
        """Every sample name in the scrape."""
        return {name for name, _ in self.samples}


def scrape(node: BrokerProcess) -> Metrics:
    """``GET /metrics`` of ``node``, parsed."""
    status, body = http_get(node.http + "/metrics")
    assert status == 200, (status, body)
    return Metrics(body.decode())


async def health(node: BrokerProcess) -> int:
    """The status of ``GET /healthz`` (0 if nothing answers), off the event loop."""
    status, _ = await asyncio.to_thread(node.health)
    return status


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float, interval: float = 0.1
) -> float:
    """Poll ``condition`` (a plain or an async callable) until it holds;
    return the seconds it took.

    Raises:
        TimeoutError: it did not hold within ``timeout`` seconds.
    """
    started = time.monotonic()
    while not await _holds(condition):
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
    return time.monotonic() - started


async def _holds(condition: Callable[[], bool | Awaitable[bool]]) -> bool:
    result = condition()
    return await result if inspect.isawaitable(result) else result


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (``VmRSS`` in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"no VmRSS for pid {pid}")


def children(pid: int) -> set[int]:
    """PIDs of the live child processes of ``pid`` (scanning /proc)."""
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        state, parent = fields[0], int(fields[1])
        if parent == pid and state != "Z":
            found.add(int(entry.name))
    return found
