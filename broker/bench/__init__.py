"""``broker bench``: a load generator that measures a broker and checks every delivery.

The coordinator (:mod:`broker.bench.runner`) starts the targets and worker
processes (:mod:`broker.bench.worker`) that hold the client connections;
:mod:`broker.bench.textbook` is the baseline a run can compare against.
"""

from broker.bench.params import SCENARIOS, BenchParams, Scenario
from broker.bench.processes import Children
from broker.bench.runner import Progress, run_bench

__all__ = ["SCENARIOS", "BenchParams", "Children", "Progress", "Scenario", "run_bench"]
