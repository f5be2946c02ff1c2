"""The ``roomcast-client`` distribution (``sdk/python/``) is the SDK alone:
its wheel holds only ``roomcast_client`` and ``protocol``, requires only
websockets and msgspec, installs into a fresh virtualenv without any of the
server's dependencies, and runs the README's SDK example there.

Needs PyPI (hatchling to build, websockets and msgspec to install), which
developers' machines and CI reach; offline, deselect with ``-m "not network"``.
"""

from __future__ import annotations

import email
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tests.conftest import BrokerFactory
from tests.sdk.readme import README_URL, sdk_example
from tests.support.processes import REPO

pytestmark = pytest.mark.network

SDK_PROJECT = REPO / "sdk" / "python"
SHIPPED_PACKAGES = ("roomcast_client", "protocol")
SERVER_DEPENDENCIES = ("redis", "hiredis", "uvloop", "prometheus-client", "pyjwt", "cryptography")


def _project(pyproject: Path) -> dict[str, Any]:
    table: dict[str, Any] = tomllib.loads(pyproject.read_text())["project"]
    return table


SDK_VERSION = _project(SDK_PROJECT / "pyproject.toml")["version"]


def _run(*command: str | Path, cwd: Path, timeout: float) -> str:
    # A clean environment for the child: nothing of this interpreter's path.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    result = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The roomcast-client wheel, built as the README says."""
    out = tmp_path_factory.mktemp("sdk-wheel")
    pip_wheel = (sys.executable, "-m", "pip", "wheel", "-q", "--no-deps")
    _run(*pip_wheel, SDK_PROJECT, "-w", out, cwd=out, timeout=120)
    [built] = out.glob("roomcast_client-*.whl")
    return built


@pytest.fixture(scope="module")
def venv_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a fresh virtualenv (no system site packages) where
    only the wheel was installed, its dependencies coming from PyPI."""
    venv = tmp_path_factory.mktemp("sdk-venv") / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=venv.parent, timeout=60)
    python = venv / "bin" / "python"
    pip_install = (python, "-m", "pip", "install", "-q", "--disable-pip-version-check")
    _run(*pip_install, wheel, cwd=venv.parent, timeout=180)
    return python


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(archive.read(name))


def _root_requirement(name: str) -> Requirement:
    requirements = [Requirement(r) for r in _project(REPO / "pyproject.toml")["dependencies"]]
    [found] = [r for r in requirements if r.name == name]
    return found


def test_wheel_requires_only_websockets_and_msgspec_with_the_servers_ranges(
    wheel: Path,
) -> None:
    required = [Requirement(r) for r in _metadata(wheel).get_all("Requires-Dist", [])]

    assert {r.name: r.specifier for r in required} == {
        "websockets": _root_requirement("websockets").specifier,
        "msgspec": _root_requirement("msgspec").specifier,
    }
    assert all(r.specifier != SpecifierSet() for r in required)


def test_wheel_holds_only_the_sdk_and_protocol_packages(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/", 1)[0] for name in archive.namelist()}

    assert tops - set(SHIPPED_PACKAGES) == {f"roomcast_client-{SDK_VERSION}.dist-info"}
    assert set(SHIPPED_PACKAGES) <= tops


def test_sdk_and_server_distributions_share_one_version() -> None:
    assert _project(REPO / "pyproject.toml")["version"] == SDK_VERSION


@pytest.mark.parametrize("package", SHIPPED_PACKAGES)
def test_wheel_ships_the_repositorys_own_copy_of_each_package(wheel: Path, package: str) -> None:
    sources = {
        path.relative_to(REPO).as_posix(): path.read_bytes()
        for path in (REPO / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n: archive.read(n) for n in archive.namelist() if n.startswith(f"{package}/")}

    assert shipped == sources


def test_installed_sdk_imports_from_the_virtualenv(venv_python: Path, tmp_path: Path) -> None:
    code = "import roomcast_client, protocol; print(roomcast_client.__file__, protocol.__file__)"

    locations = _run(venv_python, "-c", code, cwd=tmp_path, timeout=30).split()

    venv = venv_python.parent.parent
    assert all(Path(location).is_relative_to(venv) for location in locations)


def test_installed_sdk_brings_no_server_dependency(venv_python: Path, tmp_path: Path) -> None:
    listed = _run(venv_python, "-m", "pip", "list", "--format=freeze", cwd=tmp_path, timeout=60)

    installed = {line.split("==")[0].lower().replace("_", "-") for line in listed.split()}
    assert {"roomcast-client", "websockets", "msgspec"} <= installed
    assert not installed & set(SERVER_DEPENDENCIES)


def test_readme_example_runs_on_the_installed_sdk(
    venv_python: Path, broker: BrokerFactory, tmp_path: Path
) -> None:
    node = broker()
    example = sdk_example().replace(README_URL, node.url)

    # Outside the checkout, so that only the virtualenv's packages can be imported.
    printed = _run(venv_python, "-c", example, cwd=tmp_path, timeout=30)

    assert printed.startswith("s-")
    assert printed.endswith("{'text': 'hi alice'}\n")
