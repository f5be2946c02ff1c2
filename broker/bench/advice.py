"""Warnings about a run's size, with the size that would fix it (no I/O).

Server CPU is read from ``/proc`` in 10 ms ticks and a run's first and last
moments are start-up and drain: a measured window under one second gives
rough numbers (README, "Benchmarks": "measure windows of seconds"). The
window grows in proportion to the work, so the warning suggests the work
scaled up to :data:`MIN_WINDOW_S`.
"""

from __future__ import annotations

import math
from typing import Any, Final

from broker.bench.params import BenchParams

__all__ = ["MIN_WINDOW_S", "round_up", "short_window_warning"]

MIN_WINDOW_S: Final = 1.0
"""Below this measured window, a run's numbers are only rough."""


def round_up(value: float) -> int:
    """``value`` rounded up to two significant digits (3,846 -> 3,900; 7.2 -> 8)."""
    if value <= 10:
        return math.ceil(value)
    step: int = 10 ** (int(math.log10(value)) - 1)
    return math.ceil(value / step) * step


def short_window_warning(params: BenchParams, metrics: dict[str, Any]) -> str | None:
    """The warning for a measured window under one second, or None.

    Args:
        params: the run's parameters (the size to scale up).
        metrics: the target's metrics (``window_s`` or, for ``connect``,
            ``duration_s``).
    """
    match params.scenario:
        case "fanout" | "chat":
            seconds, option, size = metrics.get("window_s"), "--messages", params.messages
        case "connect":
            seconds, option, size = metrics.get("duration_s"), "--connections", params.connections
        case "presence":
            seconds, option, size = metrics.get("window_s"), "--requests", params.requests
        case "idle" | "recovery":
            return None  # a memory reading, or a time to the last client, not a rate
    if not seconds or seconds >= MIN_WINDOW_S or size < 1:
        return None
    suggested = round_up(size * MIN_WINDOW_S / seconds)
    return (
        f"the measured window was {seconds:.2f} s, under {MIN_WINDOW_S:g} s: its rates and server "
        "CPU figures are rough (/proc counts CPU in 10 ms ticks); "
        f"{option} {suggested} would measure about {MIN_WINDOW_S:g} s"
    )
