"""``broker --version`` names the installed roomcast version; the project
ships its license (issue 16, "project basics")."""

from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
import sys
import tomllib

from tests.support.processes import REPO

# MD5 of https://www.apache.org/licenses/LICENSE-2.0.txt, the unmodified text.
APACHE_2_0_MD5 = "3b83ef96387f14655fc854ddc3c6bd57"


def test_version_flag_prints_the_installed_version_and_exits_0() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "broker", "--version"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"broker {importlib.metadata.version('roomcast')}\n"


def test_installed_version_is_the_one_in_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    assert importlib.metadata.version("roomcast") == project["version"]


def test_license_is_the_unmodified_apache_2_0_text_declared_in_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    text = (REPO / "LICENSE").read_bytes()

    assert (project["license"], project["license-files"]) == ("Apache-2.0", ["LICENSE"])
    assert hashlib.md5(text, usedforsecurity=False).hexdigest() == APACHE_2_0_MD5
