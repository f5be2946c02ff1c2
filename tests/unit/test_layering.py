"""The no-I/O core stays free of I/O libraries: importing ``protocol``,
``broker.session`` and ``broker.hub`` loads neither ``websockets`` nor
``redis`` (checked in a fresh interpreter, where nothing was imported yet)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.processes import REPO

IO_LIBRARIES = ("websockets", "redis", "uvloop")


def modules_loaded_by(*imports: str) -> set[str]:
    code = (
        "import json, sys\n"
        + "".join(f"import {name}\n" for name in imports)
        + "print(json.dumps(sorted(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


@pytest.mark.parametrize("module", ["protocol", "broker.session", "broker.hub"])
def test_core_module_imports_no_io_library(module: str) -> None:
    loaded = modules_loaded_by(module)
    assert module in loaded
    for library in IO_LIBRARIES:
        assert not {m for m in loaded if m == library or m.startswith(library + ".")}, library


def test_memory_backend_imports_no_redis() -> None:
    loaded = modules_loaded_by("broker.backends")
    assert not {m for m in loaded if m == "redis" or m.startswith("redis.")}
