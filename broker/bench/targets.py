"""What a benchmark drives: brokers it was given, or ones it starts itself.

A spawned roomcast node runs as users run it (``python -m broker serve``)
with two changes that keep the broker's own guards out of the measurement:
``--say-rate 0`` (a publisher may exceed the default per-session rate) and
``--log-level WARNING`` (one INFO line per connection would be measured as
broker cost in the connect scenario). ``--history-size``, when the run sets
it, goes before ``--server-args``, which therefore has the last word.
"""

from __future__ import annotations

import asyncio
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
        backend: ``memory``, ``redis`` or ``unknown`` (given URLs).
        redis_pid: the redis-server whose CPU is measured: the one this run
            started, or the one given with ``--redis-pid``; None: not measured.
    """

    name: str
    urls: tuple[str, ...]
    server_pids: tuple[int, ...]
    spawned: bool
    backend: str
    redis_pid: int | None = None


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
) -> Target:
    """Start ``nodes`` broker nodes (on Redis if asked) and wait until healthy.

    ``history_size`` None leaves the nodes' own default (and
    ``BROKER_HISTORY_SIZE``) in force.

    Raises:
        RuntimeError: a process failed to start (its log is in the message).
        TimeoutError: a process did not become ready in time.
    """
    redis_pid = None
    if spawn_redis:
        redis_url, redis_pid = await _spawn_redis(children)
    if nodes > 1 and redis_url is None:
        raise RuntimeError("--nodes > 1 needs a Redis: give --redis URL or --spawn-redis")
    namespace = f"bench-{uuid.uuid4().hex[:10]}"
    urls, pids = [], []
    for index in range(nodes):
        port = free_port()
        argv = ["-m", "broker", "serve", "--port", str(port), "--node-id", f"bench-{index}"]
        argv += ["--say-rate", "0", "--log-level", "WARNING"]
        if history_size is not None:
            argv += ["--history-size", str(history_size)]
        if redis_url is not None:
            argv += ["--redis-url", redis_url, "--namespace", namespace]
        argv += shlex.split(server_args)
        proc = children.start_python(f"node{index}", *argv)
        await _ready(children, proc, f"broker node {index}", wait_for_http(port, "/healthz", proc))
        urls.append(f"ws://127.0.0.1:{port}/ws")
        pids.append(proc.pid)
    backend = "memory" if redis_url is None else "redis"
    return Target("roomcast", tuple(urls), tuple(pids), True, backend, redis_pid)


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


async def _ready(
    children: Children, proc: subprocess.Popen[bytes], what: str, ready: Awaitable[None]
) -> None:
    """Await ``ready`` for at most ``_START_TIMEOUT`` s; fail with the process's log."""
    try:
        async with asyncio.timeout(_START_TIMEOUT):
            await ready
    except (RuntimeError, TimeoutError) as exc:
        raise RuntimeError(f"{what} did not start: {exc}\n{children.log_of(proc)}") from exc
