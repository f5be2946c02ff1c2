"""``broker serve --workers 2`` (broker/workers.py): two node processes on
one port, talking through Redis, restarted when they die, and stopped
cleanly with the supervisor."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BrokerFactory, ClientFactory
from tests.reliability.observe import children, eventually
from tests.support.processes import REPO, BrokerProcess, RedisServer, free_port
from tests.support.wire import WireClient

WORKERS = 2


class Supervised:
    """A ``--workers`` supervisor and every worker pid seen under it."""

    def __init__(self, supervisor: BrokerProcess) -> None:
        assert supervisor.process is not None
        self.supervisor = supervisor
        self.pid = supervisor.process.pid
        self.seen: set[int] = set()

    def workers(self) -> set[int]:
        """The live workers now."""
        now = children(self.pid)
        self.seen |= now
        return now

    def kill_leftovers(self) -> None:
        """SIGKILL every worker we saw that is still a broker process."""
        self.kill_pids(self.seen)

    @staticmethod
    def kill_pids(pids: set[int]) -> None:
        """SIGKILL those of ``pids`` that are still broker processes."""
        for pid in pids:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"broker" in cmdline:
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def supervised(
    broker: BrokerFactory, shared_redis: RedisServer, namespace: str
) -> Iterator[Supervised]:
    node = broker(
        "--workers", str(WORKERS),
        "--redis-url", shared_redis.url,
        "--namespace", namespace,
        "--drain-seconds", "0.5",
    )  # fmt: skip
    supervised = Supervised(node)
    try:
        deadline = time.monotonic() + 10
        while len(supervised.workers()) < WORKERS and time.monotonic() < deadline:
            time.sleep(0.05)
        # Every worker listening: each answered /healthz at least once.
        nodes: set[str] = set()
        while len(nodes) < WORKERS and time.monotonic() < deadline:
            nodes.add(node_id(supervised))
        assert len(nodes) == WORKERS, nodes
        yield supervised
    finally:
        # The broker fixture kills the supervisor only; its workers would outlive it.
        supervised.workers()
        supervised.kill_leftovers()


def node_id(supervised: Supervised) -> str:
    status, body = supervised.supervisor.health()
    assert status == 200, (status, body)
    return str(json.loads(body)["node"])


@pytest.mark.redis
async def test_both_workers_answer_on_the_one_port(supervised: Supervised) -> None:
    seen: set[str] = set()

    def both_answered() -> bool:
        seen.add(node_id(supervised))  # a new connection lands on either worker
        return len(seen) == WORKERS

    await eventually(both_answered, timeout=10, interval=0.01)


@pytest.mark.redis
async def test_clients_on_different_workers_talk_to_each_other(
    supervised: Supervised, wire: ClientFactory
) -> None:
    by_node: dict[str, WireClient] = {}
    for _ in range(40):
        client = await wire(supervised.supervisor.url)
        by_node.setdefault(client.welcome["node"], client)
        if len(by_node) == WORKERS:
            break
    assert len(by_node) == WORKERS, by_node.keys()
    first, second = by_node.values()
    await first.join("across")
    await second.join("across")
    await first.expect("joined", session=second.session)

    await second.say("across", "hello from the other worker")

    await first.expect("message", body="hello from the other worker")


@pytest.mark.redis
async def test_killed_worker_is_restarted(supervised: Supervised) -> None:
    assert len(supervised.workers()) == WORKERS
    victim = min(supervised.workers())

    os.kill(victim, signal.SIGKILL)

    await eventually(
        lambda: len(supervised.workers()) == WORKERS and victim not in supervised.workers(),
        timeout=10,
    )


@pytest.mark.redis
async def test_sigterm_to_the_supervisor_stops_every_worker_and_exits_0(
    supervised: Supervised,
) -> None:
    workers = supervised.workers()
    assert len(workers) == WORKERS

    code = await asyncio.to_thread(supervised.supervisor.terminate, 15)

    assert code == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


@pytest.mark.redis
def test_sigterm_while_workers_are_starting_still_exits_0(shared_redis: RedisServer) -> None:
    """A stop during start-up (a quick rolling deploy) is a clean stop too.

    Bug (broker/workers.py): a worker still importing has no SIGTERM handler
    yet, so the forwarded SIGTERM kills it (exit -15) and the supervisor
    exits 1. Proposed fix, in ``_Worker.run`` after ``wait()``: when
    ``stopping`` is set, ``return 0 if code in (-signal.SIGTERM,
    -signal.SIGINT) else code``.
    """
    command = [sys.executable, "-m", "broker", "serve", "--workers", str(WORKERS)]
    process = subprocess.Popen(
        [*command, "--redis-url", shared_redis.url, "--port", str(free_port())],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 10
        while len(seen) < WORKERS and time.monotonic() < deadline:
            seen |= children(process.pid)
            time.sleep(0.01)
        assert len(seen) == WORKERS, seen

        process.send_signal(signal.SIGTERM)  # the workers are still importing

        assert process.wait(15) == 0
    finally:
        process.kill()
        process.wait(10)
        Supervised.kill_pids(seen)


def test_workers_without_redis_exit_2_with_a_reason() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "broker", "serve", "--workers", "2", "--port", str(free_port())],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,
    )

    assert result.returncode == 2
    assert "--redis-url" in result.stderr


def test_workers_that_cannot_bind_the_port_exit_2_instead_of_restarting_forever(
    shared_redis: RedisServer,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()  # no SO_REUSEPORT: the workers cannot share this port
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "broker", "serve", "--workers", str(WORKERS)]
        result = subprocess.run(
            [*command, "--redis-url", shared_redis.url, "--port", str(port)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert result.returncode == 2
    assert "cannot listen" in result.stderr
    assert "Traceback" not in result.stderr
