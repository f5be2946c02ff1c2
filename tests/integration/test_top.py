"""``broker top`` against a two-node cluster on a real Redis: ``--json``
for scripts, and the live view in a real terminal (tmux)."""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BrokerFactory, ClientFactory
from tests.deploy.tools import require_tool
from tests.support.processes import REPO, BrokerProcess, RedisServer, free_port

pytestmark = pytest.mark.redis

TOP = (sys.executable, "-m", "broker", "top")


@pytest.fixture
def cluster(
    broker: BrokerFactory, shared_redis: RedisServer, namespace: str
) -> list[BrokerProcess]:
    """Two nodes on one Redis, ids ``top-a`` and ``top-b``."""
    return [
        broker("--redis-url", shared_redis.url, "--namespace", namespace, "--node-id", node_id)
        for node_id in ("top-a", "top-b")
    ]


async def top_json(*urls: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        *TOP, "--json", "--interval", "0.5", *urls, cwd=REPO, stdout=subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    snapshot: dict[str, Any] = json.loads(stdout)
    return snapshot


async def test_json_snapshot_shows_each_node_with_its_clients_and_rooms(
    cluster: list[BrokerProcess], wire: ClientFactory
) -> None:
    for node in cluster:
        client = await wire(node.url)
        await client.join("lobby")

    snapshot = await top_json(*(node.http for node in cluster))

    nodes = snapshot["nodes"]
    assert [n["node"] for n in nodes] == ["top-a", "top-b"]
    for n in nodes:
        assert (n["up"], n["backend"], n["error"]) == (True, "up", None)
        assert (n["connections"], n["rooms"], n["memberships"]) == (1, 1, 1)
        assert n["rss_bytes"] > 0
        assert n["loop_lag_seconds"] >= 0
    assert (snapshot["totals"]["nodes_up"], snapshot["totals"]["connections"]) == (2, 2)


async def test_json_snapshot_has_rates_from_its_two_readings(
    cluster: list[BrokerProcess],
) -> None:
    snapshot = await top_json(*(node.http for node in cluster))

    for n in snapshot["nodes"]:
        rates = (n["messages_in_per_s"], n["messages_out_per_s"], n["deliveries_per_s"])
        assert all(isinstance(rate, float) and rate >= 0 for rate in rates), rates
        assert n["slow_consumer_disconnects"] == 0


async def test_a_node_that_does_not_answer_is_shown_as_down(
    cluster: list[BrokerProcess],
) -> None:
    silent = f"http://127.0.0.1:{free_port()}"

    snapshot = await top_json(cluster[0].http, silent)

    down = snapshot["nodes"][1]
    assert (down["url"], down["up"], down["connections"]) == (silent, False, None)
    assert down["error"]
    assert (snapshot["totals"]["nodes_up"], snapshot["totals"]["nodes_down"]) == (1, 1)


class Tmux:
    """A tmux server of this test's own (its own socket), killed at the end."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.socket = "roomcast-top-" + uuid.uuid4().hex[:8]

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, "-L", self.socket, *args], capture_output=True, text=True, timeout=10
        )

    def screen(self, session: str) -> str:
        return self("capture-pane", "-p", "-t", session).stdout

    def kill_server(self) -> None:
        self("kill-server")


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    server = Tmux(require_tool("tmux"))
    yield server
    server.kill_server()


def wait_for(condition: Any, timeout: float, what: str) -> None:
    """Poll ``condition()`` (a screen read or a file check has no event to await)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def test_live_view_in_a_terminal_shows_both_nodes_and_quits_on_q(
    cluster: list[BrokerProcess], tmux: Tmux, tmp_path: Path
) -> None:
    exit_file = tmp_path / "exit-code"
    command = shlex.join([*TOP, *(node.http for node in cluster)])
    # Written aside, then renamed: the test never reads a half-written file.
    part = shlex.quote(f"{exit_file}.part")
    shell = f"{command}; echo $? > {part} && mv {part} {shlex.quote(str(exit_file))}"
    started = tmux(
        "new-session", "-d", "-s", "top", "-x", "160", "-y", "20", "-c", str(REPO), shell
    )
    assert started.returncode == 0, started.stderr

    wait_for(
        lambda: all(node_id in tmux.screen("top") for node_id in ("top-a", "top-b")),
        15,
        "both node ids on the screen",
    )
    screen = tmux.screen("top")
    tmux("send-keys", "-t", "top", "q")
    wait_for(exit_file.exists, 10, "broker top to exit after q")

    assert "2 up" in screen and "0 down" in screen, screen
    assert exit_file.read_text().strip() == "0"
