"""``deploy/measure_publish_script.py``, the Redis CPU per say measurement,
on a small scale: every run is counted (no timing is judged here)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.deploy.tools import require_tool
from tests.support.processes import REPO

SCRIPT = REPO / "deploy" / "measure_publish_script.py"

pytestmark = pytest.mark.redis


def test_measure_reports_every_run_and_the_medians_of_the_three_scripts() -> None:
    require_tool("redis-server")
    rounds, calls = 2, 2_000

    result = subprocess.run(
        [
            *(sys.executable, str(SCRIPT), "--rounds", str(rounds), "--calls", str(calls)),
            *("--history-size", "10"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )

    # The tool itself checks each run: Redis ran every call and none failed,
    # the room's offset moved by as many, and the subscriber read every message.
    assert result.returncode == 0, result.stderr
    runs = re.findall(r"^round (\d+)\s+(\w+)\s+[\d.]+ µs\s+[\d,]+ calls/s$", result.stdout, re.M)
    assert runs == [(str(r), name) for r in range(1, rounds + 1) for name in SCRIPTS]
    for name in SCRIPTS:
        assert re.search(rf"^median {name}\s+[\d.]+ µs per call$", result.stdout, re.M)
    ratios = r"^publish / naive: [\d.]+ \(median of the rounds' ratios: [\d.]+\)$"
    assert re.search(ratios, result.stdout, re.M)


SCRIPTS = ("empty", "naive", "publish")


def test_measure_refuses_an_unbounded_run() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--calls", "100000000"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )

    assert result.returncode != 0
    assert "calls" in result.stderr
