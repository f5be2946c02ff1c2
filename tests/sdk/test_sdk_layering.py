"""The SDK depends only on the ``protocol`` package and the websockets
client: importing it loads none of the server's modules, nor redis."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.processes import REPO


def test_sdk_loads_no_server_module_and_no_redis() -> None:
    code = "import json, sys, broker.client\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=30
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))

    ours = {m for m in loaded if m == "broker" or m.startswith("broker.")}
    assert ours - {"broker"} == {m for m in ours if m.startswith("broker.client")}
    assert not {m for m in loaded if m == "redis" or m.startswith("redis.")}
    assert "websockets.asyncio.server" not in loaded
