"""The load generator's paths to 100,000 connections, at small sizes: several
source addresses, workers under their descriptor limit, a bounded connect
rate, ``serve --workers N`` spawned, and the one line that names the limit a
run met (descriptors, the server's ``--max-connections``).

Smoke tests of behaviour, never of speed: no number is compared with a
threshold.
"""

from __future__ import annotations

import asyncio
import errno
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from broker.bench.bounded import run_bounded
from broker.bench.limits import (
    PORT_RANGE_SHARE,
    fd_shortfall,
    limit_of,
    port_range_size,
    source_addresses,
)
from broker.bench.params import CONNECTIONS_PER_WORKER, BenchParams
from broker.bench.plans import make_plan
from broker.bench.processes import Children
from broker.bench.workers import _all_or_none
from broker.bench.wsclient import HandshakeError
from tests.conftest import BrokerFactory
from tests.support.processes import REPO


def bench(*args: str, limit_fds: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m broker bench ...``; with ``limit_fds`` the run (and so
    every process it starts) may hold at most that many descriptors."""

    def lower() -> None:
        if limit_fds is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit_fds, limit_fds))

    return subprocess.run(
        [sys.executable, "-m", "broker", "bench", *args, "--timeout", "60"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=90,
        preexec_fn=lower,
    )


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def gone_within(pid: int, seconds: float) -> bool:
    """Whether ``pid`` ends within ``seconds`` (a SIGKILL takes effect soon, not at once)."""
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)  # polling another process's state
    return True


def record_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(result.stdout)
    return record


# --- the plan ---------------------------------------------------------------


def test_no_worker_gets_more_than_its_share_of_100000_connections() -> None:
    params = BenchParams("idle", connections=100_000)

    assert params.worker_count() == -(-100_000 // CONNECTIONS_PER_WORKER)


def test_small_runs_keep_one_worker_per_500_connections() -> None:
    assert BenchParams("idle", connections=1200).worker_count() == 3


def test_sources_are_as_many_as_the_port_range_needs() -> None:
    per_source = int(port_range_size() * PORT_RANGE_SHARE)

    assert source_addresses(None, per_source) == [None]
    assert source_addresses(None, per_source + 1) == ["127.0.0.2", "127.0.0.3"]


def test_sources_asked_for_are_used_even_when_one_would_do() -> None:
    assert source_addresses(3, 10) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


def test_the_plan_spreads_connections_over_the_sources_evenly() -> None:
    params = BenchParams("idle", connections=60, clients_procs=2)
    sources = source_addresses(3, 60)

    plan = make_plan(params, ("ws://127.0.0.1:1/ws",), sources)

    used = [spec.source for setup in plan.setups for spec in setup.conns]
    assert sorted(used.count(s) for s in sources) == [20, 20, 20]


def test_the_connect_rate_is_shared_by_the_workers() -> None:
    params = BenchParams("idle", connections=60, clients_procs=3, connect_rate=300.0)

    plan = make_plan(params, ("ws://127.0.0.1:1/ws",))

    assert [setup.connect_rate for setup in plan.setups] == [100.0, 100.0, 100.0]


# --- limits -----------------------------------------------------------------


def test_more_connections_than_descriptors_is_the_limit_met() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)

    line = fd_shortfall(soft)

    assert line is not None
    assert line.startswith("file-descriptor limit")


def test_out_of_ports_is_the_limit_met() -> None:
    line = limit_of(OSError(errno.EADDRNOTAVAIL, "no address"), "ws://x/ws from 127.0.0.2")

    assert line is not None
    assert "--source-addresses" in line


def test_a_503_is_the_servers_limit() -> None:
    line = limit_of(HandshakeError("server answered 'HTTP/1.1 503 Service Unavailable'"), "u")

    assert line is not None
    assert "--max-connections" in line


def test_a_reset_in_the_handshake_is_the_servers_descriptor_limit_from_any_source() -> None:
    reset = HandshakeError("connection lost during handshake: [Errno 104] Connection reset")

    lines = {limit_of(reset, f"ws://x/ws from 127.0.0.{i}") for i in (2, 3)}

    assert len(lines) == 1
    (line,) = lines
    assert line is not None
    assert "file-descriptor limit" in line


def test_an_ordinary_refusal_is_no_limit() -> None:
    assert limit_of(ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "u") is None


async def test_no_job_starts_after_a_limit_is_met() -> None:
    started = 0

    async def job() -> int:
        nonlocal started
        started += 1
        raise OSError(errno.EMFILE, "Too many open files")

    batch = await run_bounded([("u", job)] * 10, 1, 5.0, limit_of=limit_of)

    assert (started, batch.failed, batch.done) == (1, 10, 0)
    assert batch.limit is not None
    assert batch.limit.startswith("file-descriptor limit")


async def test_a_failed_worker_leaves_the_other_streams_readable() -> None:
    failing, waiting = asyncio.StreamReader(), asyncio.StreamReader()

    async def fail() -> bytes:
        await asyncio.sleep(0)
        raise RuntimeError("worker gone")

    with pytest.raises(RuntimeError, match="worker gone"):
        await _all_or_none([fail(), waiting.readline()])
    waiting.feed_eof()

    # The pool's close reads every worker's stream to its end.
    assert await waiting.read() == b""
    failing.feed_eof()


# A supervisor that outlives SIGTERM (as ``serve --workers`` does while its
# workers drain) and has a child of its own; it prints the child's PID.
_SUPERVISOR = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


def test_ending_the_run_ends_the_children_of_a_supervisor_too() -> None:
    children = Children()
    supervisor = children.start_python("supervisor", "-c", _SUPERVISOR, pipes=True)
    assert supervisor.stdout is not None
    worker = int(supervisor.stdout.readline())

    children.end_all(grace=0.2)

    assert not alive(supervisor.pid)
    assert gone_within(worker, 5.0)


# --- end to end -------------------------------------------------------------


def test_idle_connects_from_several_source_addresses(broker: BrokerFactory) -> None:
    node = broker("--log-level", "INFO")

    result = bench(
        "idle", "--url", node.url, "--connections", "30", "--source-addresses", "3",
        "--clients-procs", "2", "--connect-rate", "500", "--json",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    metrics = record_of(result)["results"][0]["metrics"]
    assert metrics["connections"] == 30
    assert metrics["source_addresses"] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    peers = re.findall(r"\bconnect session=\S+ peer=([\d.]+):\d+", node.log())
    assert len(peers) == 30
    assert {p: peers.count(p) for p in set(peers)} == {
        "127.0.0.2": 10,
        "127.0.0.3": 10,
        "127.0.0.4": 10,
    }


def test_a_worker_short_of_descriptors_names_that_limit() -> None:
    result = bench(
        "idle", "--spawn", "--connections", "300", "--clients-procs", "1", limit_fds=200
    )  # fmt: skip

    assert result.returncode == 1, result.stderr
    assert "limit met: file-descriptor limit: a worker may hold 200" in result.stdout
    assert "300 connections failed" in result.stdout


def test_the_servers_max_connections_is_the_limit_met() -> None:
    result = bench(
        "idle", "--spawn", "--connections", "40", "--clients-procs", "1",
        "--connect-concurrency", "1", "--server-args", "--max-connections 25",
    )  # fmt: skip

    assert result.returncode == 1, result.stderr
    assert "limit met: the server refused more connections" in result.stdout
    assert "--max-connections" in result.stdout
    assert "15 connections failed" in result.stdout


@pytest.mark.redis
def test_spawned_workers_share_one_port_and_are_measured_together() -> None:
    result = bench(
        "idle", "--spawn-redis", "--workers", "2", "--connections", "40",
        "--idle-seconds", "0.5", "--json",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    outcome = record_of(result)["results"][0]
    assert len(outcome["urls"]) == 1
    metrics = outcome["metrics"]
    assert metrics["connections"] == 40
    # The supervisor and its two workers, each measured.
    assert len(metrics["server_processes"]) == 3
    assert all(p["idle_cpu_percent"] is not None for p in metrics["server_processes"])
    assert metrics["idle_cpu_percent_of_core"] is not None
    assert metrics["idle_redis_cpu_percent_of_core"] is not None
