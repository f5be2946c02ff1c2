"""The counters of one node: plain integers that the connection, the server
and the node increment, and that :mod:`broker.metrics` reads at scrape time.

Why plain attributes: an increment on the hot path must cost one attribute
store, not a lock (a Prometheus ``Counter.inc()`` takes one per call).

Invariants:
    * Every counter but ``sessions`` and ``loop_lag`` only grows.
    * ``sessions`` is the number of open client sessions: incremented when one
      is greeted, decremented exactly once when it ends.
"""

from __future__ import annotations

import bisect
from collections import Counter

__all__ = ["Counters", "LatencyHistogram"]


class LatencyHistogram:
    """A fixed-bucket histogram cheap enough to observe once per message."""

    BOUNDS: tuple[float, ...] = (
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    )  # fmt: skip

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BOUNDS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        """Count one observation."""
        self.counts[bisect.bisect_left(self.BOUNDS, seconds)] += 1
        self.sum += seconds

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative buckets as Prometheus wants them, ending with ``+Inf``."""
        cumulative, total = [], 0
        for bound, count in zip((*map(str, self.BOUNDS), "+Inf"), self.counts, strict=True):
            total += count
            cumulative.append((bound, float(total)))
        return cumulative


class Counters:
    """What a node counts.

    Attributes:
        sessions: client sessions open now.
        connections_total: client sessions greeted since start.
        connections_refused: handshakes refused because the node was full or draining.
        says: says accepted from this node's clients.
        publish_failures: publishes the backend refused.
        slow_consumers: clients closed with 1013 for not reading.
        errors: error replies (and refused handshakes) by wire code.
        latency: from a publish accepted on its origin node to its fan-out here.
        loop_lag: the event loop's last measured lag, in seconds.
    """

    __slots__ = (
        "connections_refused",
        "connections_total",
        "errors",
        "latency",
        "loop_lag",
        "publish_failures",
        "says",
        "sessions",
        "slow_consumers",
    )

    def __init__(self) -> None:
        self.sessions = 0
        self.connections_total = 0
        self.connections_refused = 0
        self.says = 0
        self.publish_failures = 0
        self.slow_consumers = 0
        self.errors: Counter[str] = Counter()
        self.latency = LatencyHistogram()
        self.loop_lag = 0.0
