"""``broker bench``: a load generator that measures a broker and checks every delivery.

The coordinator (:mod:`broker.bench.runner`) starts the targets and worker
processes (:mod:`broker.bench.worker`) that hold the client connections;
:mod:`broker.bench.textbook` is the baseline a run can compare against.

The public names are imported on first use (PEP 562): ``broker --help``
reads the column help of :mod:`broker.bench.report`, and neither it nor a
worker process should pay for importing the coordinator.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from broker.bench.outcome import Progress
    from broker.bench.params import SCENARIOS, BenchParams, Scenario
    from broker.bench.processes import Children
    from broker.bench.runner import run_bench

__all__ = ["SCENARIOS", "BenchParams", "Children", "Progress", "Scenario", "run_bench"]

_HOMES = {
    "SCENARIOS": "broker.bench.params",
    "BenchParams": "broker.bench.params",
    "Scenario": "broker.bench.params",
    "Children": "broker.bench.processes",
    "Progress": "broker.bench.outcome",
    "run_bench": "broker.bench.runner",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
