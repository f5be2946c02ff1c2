"""The SDK depends only on the ``protocol`` package and the websockets
client: importing ``roomcast_client`` in a fresh interpreter loads none of
the server's modules and none of the server's dependencies."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.processes import REPO

SERVER_ONLY = ["broker", "redis", "hiredis", "jwt", "cryptography", "prometheus_client", "uvloop"]


def _modules_loaded_by_importing_the_sdk() -> set[str]:
    code = "import json, sys, roomcast_client\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


@pytest.fixture(scope="module")
def loaded() -> set[str]:
    """Every module a fresh interpreter holds after ``import roomcast_client``."""
    return _modules_loaded_by_importing_the_sdk()


@pytest.mark.parametrize("package", SERVER_ONLY)
def test_sdk_loads_no_server_package(loaded: set[str], package: str) -> None:
    assert not {m for m in loaded if m == package or m.startswith(package + ".")}


def test_sdk_loads_no_websockets_server(loaded: set[str]) -> None:
    assert not {m for m in loaded if m.startswith("websockets") and "server" in m}


def test_sdk_loads_the_websockets_client_and_the_protocol(loaded: set[str]) -> None:
    # The layering test is only worth something if the import really happened.
    assert {"roomcast_client", "protocol", "websockets.asyncio.client"} <= loaded
