"""Fixtures of the TypeScript SDK's tests: Node.js and npm, and the package
in ``sdk/typescript`` installed (``npm ci``, once per session, skipped when
``node_modules`` already matches ``package-lock.json``) and built.

Without ``node`` or ``npm`` the tests are skipped with a line saying how to
install them, except when ``ROOMCAST_REQUIRE_DEPLOY_TOOLS=1`` (set by
``.ci/run``): then they fail, as the deploy tests do for their tools.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.cdp import Chromium
from tests.deploy.tools import require_tool
from tests.support.processes import REPO

SDK = REPO / "sdk" / "typescript"
REQUIRE = os.environ.get("ROOMCAST_REQUIRE_DEPLOY_TOOLS") == "1"
MIN_NODE = 20


def require(name: str) -> str:
    """The path of ``name``; skips (or, in CI, fails) the test without it."""
    found = shutil.which(name)
    if found is not None:
        return found
    reason = f"{name} not installed: install Node.js {MIN_NODE}+ (apt-get install nodejs npm)"
    if REQUIRE:
        pytest.fail(f"ROOMCAST_REQUIRE_DEPLOY_TOOLS=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def run(
    argv: list[str],
    *,
    cwd: Path = SDK,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; on failure, fail the test showing everything it printed."""
    result = subprocess.run(
        argv,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"`{' '.join(argv)}` in {cwd} exited with {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}",
            pytrace=False,
        )
    return result


def installed_is_current(sdk: Path = SDK) -> bool:
    """Whether ``node_modules`` holds exactly what ``package-lock.json`` locks.

    npm's hidden lockfile (``node_modules/.package-lock.json``) lists what is
    installed; optional packages of other platforms are absent from it.
    """
    try:
        locked: dict[str, Any] = json.loads((sdk / "package-lock.json").read_text())["packages"]
        present: dict[str, Any] = json.loads(
            (sdk / "node_modules" / ".package-lock.json").read_text()
        )["packages"]
    except (OSError, KeyError, ValueError):
        return False
    return all(locked.get(name) == entry for name, entry in present.items()) and all(
        name in present for name, entry in locked.items() if name and not entry.get("optional")
    )


@pytest.fixture(scope="session")
def npm() -> str:
    """The npm binary, with a Node.js new enough beside it."""
    node = require("node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    if major < MIN_NODE:
        message = f"Node.js {MIN_NODE}+ is needed, found {version.stdout.strip()}"
        if REQUIRE:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return require("npm")


@pytest.fixture(scope="session")
def sdk(npm: str) -> Path:
    """``sdk/typescript``, installed from its lockfile and built (``dist/``)."""
    if not installed_is_current():
        run([npm, "ci", "--no-audit", "--no-fund"])
    run([npm, "run", "build"])
    return SDK


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    """One headless Chromium for a module (as the deploy tests use it)."""
    browser = Chromium(require_tool("chromium")).start()
    yield browser
    browser.stop()
