"""Where a benchmark ran: the machine and the software, for its record."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["describe_machine"]

_PACKAGES = ("websockets", "msgspec", "redis", "hiredis", "uvloop")


def _cpu_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or None
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe_machine() -> dict[str, Any]:
    """Cores, CPU model, OS, Python and the versions of the libraries that matter.

    ``uvloop`` tells whether the broker, the workers and the textbook server
    run on uvloop: :func:`broker.runtime.run_async` uses it when installed.
    """
    versions = {name: _version(name) for name in _PACKAGES}
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": versions,
        "uvloop": versions["uvloop"] is not None,
    }
