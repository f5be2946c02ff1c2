"""``deploy/measure_idle_rss.py``, the sizing measurement, on a small scale."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support.processes import REPO

SCRIPT = REPO / "deploy" / "measure_idle_rss.py"


def test_measure_reports_the_memory_of_each_idle_client() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--steps", "20,40", "--rooms", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )

    assert result.returncode == 0, result.stderr
    assert re.search(r"^\s+40 idle clients\s+RSS\s+[\d.]+ MiB$", result.stdout, re.M)
    per_client = re.search(
        r"^per idle client, 0 -> 20 clients: (-?[\d.]+) KiB$", result.stdout, re.M
    )
    assert per_client is not None, result.stdout
    # KiB, not bytes or pages: a client costs kilobytes, not megabytes. (At
    # 20 clients the sign is noise; deploy/README numbers use thousands.)
    assert abs(float(per_client[1])) < 1024
