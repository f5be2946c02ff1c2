"""What a benchmark drives: brokers it was given, or ones it starts itself.

A spawned roomcast node runs as users run it (``python -m broker serve``)
with two changes that keep the broker's own guards out of the measurement:
``--say-rate 0`` (a publisher may exceed the default per-session rate) and
``--log-level WARNING`` (one INFO line per connection would be measured as
broker cost in the connect scenario). ``--history-size``, when the run sets
it, goes before ``--server-args``, which therefore has the last word.

With ``--spawn-redis-cluster`` the nodes run with ``--redis-cluster`` on a
:class:`~broker.bench.redis_cluster.LocalRedisCluster` this run starts (its
servers are ended by PID with the rest of the run's processes).
"""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass

from broker.bench.processes import (
    Children,
    free_port,
    redis_server_binary,
    wait_for_http,
    wait_for_port,
)
from broker.bench.redis_cluster import LocalRedisCluster

__all__ = ["Target", "given_target", "spawn_roomcast", "spawn_textbook"]

_START_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True)
class Target:
    """Servers under test.

    Attributes:
        name: ``roomcast`` or ``textbook``.
        urls: WebSocket URL of every node (clients are spread over them).
        server_pids: PIDs whose CPU and memory count as the server's (may be empty).
        spawned: whether this run started them.
        backend: ``memory``, ``redis``, ``redis-cluster`` or ``unknown`` (given URLs).
        redis_pid: the redis-server whose CPU is measured: the one this run
            started, or the one given with ``--redis-pid``; None: not measured.
        cluster: the Redis Cluster this run started (``--spawn-redis-cluster``).
        namespace: the nodes' ``--namespace`` (spawned on Redis), to tell
            which shard owns each room.
    """

    name: str
    urls: tuple[str, ...]
    server_pids: tuple[int, ...]
    spawned: bool
    backend: str
    redis_pid: int | None = None
    cluster: LocalRedisCluster | None = None
    namespace: str | None = None

    @property
    def redis_pids(self) -> tuple[int, ...]:
        """Every redis-server whose CPU counts: the one Redis, or every server
        (masters and replicas) of the cluster."""
        if self.cluster is not None:
            return tuple(self.cluster.pids)
        return (self.redis_pid,) if self.redis_pid else ()


def given_target(urls: list[str], pids: list[int]) -> Target:
    """Brokers that already run; CPU and RSS are measured only if ``pids`` are given."""
    return Target("roomcast", tuple(urls), tuple(pids), spawned=False, backend="unknown")


async def spawn_roomcast(
    children: Children,
    nodes: int,
    redis_url: str | None,
    spawn_redis: bool,
    server_args: str,
    history_size: int | None = None,
    cluster_masters: int | None = None,
    workers: int = 1,
) -> Target:
    """Start ``nodes`` broker nodes (on Redis if asked) and wait until healthy.

    ``workers`` > 1 makes each node a ``broker serve --workers N``: a
    supervisor and N node processes on one port (SO_REUSEPORT). Its PID
    stands for the whole tree, so CPU and RSS are the workers' sum.

    ``history_size`` None leaves the nodes' own default (and
    ``BROKER_HISTORY_SIZE``) in force. ``cluster_masters`` (not None) starts
    a Redis Cluster of that many masters with one replica each and runs the
    nodes on it.

    Raises:
        RuntimeError: a process failed to start (its log is in the message).
        TimeoutError: a process did not become ready in time.
    """
    redis_pid = None
    cluster = None
    if spawn_redis:
        redis_url, redis_pid = await _spawn_redis(children)
    if cluster_masters is not None:
        cluster = await _spawn_redis_cluster(children, cluster_masters)
    if nodes > 1 and redis_url is None and cluster is None:
        raise RuntimeError("--nodes > 1 needs a Redis: give --redis URL or --spawn-redis")
    if workers > 1 and redis_url is None and cluster is None:
        raise RuntimeError("--workers > 1 needs a Redis: give --redis URL or --spawn-redis")
    namespace = f"bench-{uuid.uuid4().hex[:10]}"
    urls, pids = [], []
    for index in range(nodes):
        port = free_port()
        argv = ["-m", "broker", "serve", "--port", str(port), "--node-id", f"bench-{index}"]
        argv += ["--say-rate", "0", "--log-level", "WARNING"]
        if workers > 1:
            argv += ["--workers", str(workers)]
        if history_size is not None:
            argv += ["--history-size", str(history_size)]
        if redis_url is not None:
            argv += ["--redis-url", redis_url, "--namespace", namespace]
        if cluster is not None:
            argv += ["--redis-cluster", cluster.seed_list, "--namespace", namespace]
        argv += shlex.split(server_args)
        proc = children.start_python(f"node{index}", *argv)
        ready = (
            _every_worker(port, workers, proc)
            if workers > 1
            else wait_for_http(port, "/healthz", proc)
        )
        await _ready(children, proc, f"broker node {index}", ready)
        urls.append(f"ws://127.0.0.1:{port}/ws")
        pids.append(proc.pid)
    on_redis = redis_url is not None or cluster is not None
    backend = "redis-cluster" if cluster is not None else "redis" if on_redis else "memory"
    return Target(
        "roomcast",
        tuple(urls),
        tuple(pids),
        True,
        backend,
        redis_pid,
        cluster,
        namespace if on_redis else None,
    )


async def spawn_textbook(children: Children) -> Target:
    """Start the textbook baseline (:mod:`broker.bench.textbook`) on a free port."""
    port = free_port()
    proc = children.start_python("textbook", "-m", "broker.bench.textbook", "--port", str(port))
    await _ready(children, proc, "textbook server", wait_for_http(port, "/healthz", proc))
    return Target("textbook", (f"ws://127.0.0.1:{port}/ws",), (proc.pid,), True, "memory")


async def _spawn_redis(children: Children) -> tuple[str, int]:
    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError("--spawn-redis: redis-server is not installed (or give --redis URL)")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--protected-mode", "no"]
    proc = children.start("redis", argv)
    await _ready(children, proc, "redis-server", wait_for_port(port, proc))
    return f"redis://127.0.0.1:{port}/0", proc.pid


async def _spawn_redis_cluster(children: Children, masters: int) -> LocalRedisCluster:
    if redis_server_binary() is None:
        raise RuntimeError("--spawn-redis-cluster: redis-server is not installed")
    cluster = LocalRedisCluster(masters=masters, replicas=1)
    # Ended with the run's other processes, even if the start is cut short.
    children.add_cleanup(cluster.stop)
    # The start polls other processes in a blocking loop: off the event loop.
    await asyncio.to_thread(cluster.start, _START_TIMEOUT)
    return cluster


async def _every_worker(port: int, workers: int, proc: subprocess.Popen[bytes]) -> None:
    """Wait until ``workers`` distinct nodes answer ``/healthz`` on ``port``.

    Why: SO_REUSEPORT spreads connections over the sockets listening at that
    moment; clients that came while only some workers listened would load
    those alone.
    """
    await wait_for_http(port, "/healthz", proc)
    seen: set[str] = set()
    while len(seen) < workers:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode}")
        node = await _healthz_node(port)
        if node is None or node in seen:
            # Polling: each probe lands on a worker the kernel picks.
            await asyncio.sleep(0.02)
        else:
            seen.add(node)


async def _healthz_node(port: int) -> str | None:
    """The node id one ``GET /healthz`` on ``port`` reports (None: no answer)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return None
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
    except OSError:
        return None
    finally:
        writer.close()
    _, _, body = answer.partition(b"\r\n\r\n")
    try:
        node = json.loads(body).get("node")
    except (ValueError, AttributeError):
        return None
    return node if isinstance(node, str) else None


async def _ready(
    children: Children, proc: subprocess.Popen[bytes], what: str, ready: Awaitable[None]
) -> None:
    """Await ``ready`` for at most ``_START_TIMEOUT`` s; fail with the process's log."""
    try:
        async with asyncio.timeout(_START_TIMEOUT):
            await ready
    except (RuntimeError, TimeoutError) as exc:
        raise RuntimeError(f"{what} did not start: {exc}\n{children.log_of(proc)}") from exc
