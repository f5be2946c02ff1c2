#!/usr/bin/env python3
"""Measure a broker node's resident memory per idle WebSocket connection.

    python deploy/measure_idle_rss.py --steps 1000,2000,4000 [--redis-url URL]

Starts one node (``python -m broker serve`` on a free loopback port), reads
its RSS from ``/proc`` while it has no clients, then opens clients in steps:
each connects, joins one of ``--rooms`` rooms and then stays idle. After each
step it reads the node's RSS again. It prints one line per step and the
slope between the first and the last step, which is the cost of one more idle
client. Bounded: at most 20,000 clients, and it stops the node (by its PID)
and closes every client when done. Linux only (``/proc``).

With ``--url URL --pid PID`` it starts nothing: the clients connect to URL
and the RSS read is PID's, e.g. the nginx worker of ``deploy/local-cluster``
(``--url ws://127.0.0.1:8080/ws --pid $(pgrep -P <nginx master pid>)``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence

from websockets.asyncio.client import ClientConnection, connect

__all__ = ["main"]

MAX_CLIENTS = 20_000


def rss_kib(pid: int) -> int:
    """The resident set size of process ``pid`` in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(port: int, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("measure: the node did not become healthy")
        time.sleep(0.05)


async def _open_client(url: str, room: str) -> ClientConnection:
    # Unbounded: every frame sent to a client is read at once, so the node's
    # write buffers stay empty and we measure idle clients, not a backlog.
    ws = await connect(url, ping_interval=None, max_queue=None)
    json.loads(await ws.recv())  # welcome
    await ws.send(json.dumps({"type": "join", "room": room, "ref": 1}))
    # Replies and other members' joined events may interleave: wait for ours.
    while (reply := json.loads(await ws.recv())).get("ref") != 1:
        pass
    if reply["type"] != "ok":
        raise RuntimeError(f"join failed: {reply}")
    return ws


async def _open_many(
    url: str, first: int, count: int, rooms: int, parallel: int
) -> list[ClientConnection]:
    gate = asyncio.Semaphore(parallel)

    async def one(index: int) -> ClientConnection:
        async with gate:
            return await _open_client(url, f"room-{index % rooms}")

    return list(await asyncio.gather(*(one(first + i) for i in range(count))))


async def measure(
    pid: int, url: str, steps: Sequence[int], rooms: int, parallel: int
) -> list[tuple[int, int]]:
    """RSS (KiB) of ``pid`` at 0 clients and after each step; returns (clients, rss) pairs."""
    samples = [(0, rss_kib(pid))]
    clients: list[ClientConnection] = []
    try:
        for target in steps:
            clients += await _open_many(url, len(clients), target - len(clients), rooms, parallel)
            await asyncio.sleep(1.0)  # let the node finish its bookkeeping before reading /proc
            samples.append((len(clients), rss_kib(pid)))
            print(
                f"{len(clients):>7} idle clients   RSS {samples[-1][1] / 1024:8.1f} MiB",
                flush=True,
            )
    finally:
        await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)
    return samples


def _report(samples: Sequence[tuple[int, int]], what: str) -> None:
    (_, idle), (first, rss_first), (last, rss_last) = samples[0], samples[1], samples[-1]
    print(f"idle {what}: {idle / 1024:.1f} MiB")
    print(f"per idle client, 0 -> {first} clients: {(rss_first - idle) / first:.1f} KiB")
    if last > first:
        slope = (rss_last - rss_first) / (last - first)
        print(f"per idle client, {first} -> {last} clients: {slope:.1f} KiB")


def _measure_own_node(args: argparse.Namespace, steps: Sequence[int]) -> list[tuple[int, int]]:
    port = _free_port()
    command = [sys.executable, "-m", "broker", "serve", "--port", str(port)]
    command += ["--log-level", "WARNING"]
    if args.redis_url:
        command += ["--redis-url", args.redis_url]
    env = {**os.environ, "BROKER_MAX_CONNECTIONS": str(MAX_CLIENTS + 100)}
    node = subprocess.Popen(command, env=env)
    try:
        _wait_healthy(port, node)
        backend = "redis" if args.redis_url else "memory"
        print(f"node pid {node.pid}, {backend} backend, {args.rooms} rooms", flush=True)
        url = f"ws://127.0.0.1:{port}/ws"
        return asyncio.run(measure(node.pid, url, steps, args.rooms, args.parallel))
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(30)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurement and print the per-connection cost."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", default="1000,2000,4000", help="client counts to measure at")
    parser.add_argument("--rooms", type=int, default=100, help="rooms the clients spread over")
    parser.add_argument("--redis-url", help="run the node on this Redis (default: memory backend)")
    parser.add_argument("--parallel", type=int, default=50, help="handshakes in flight at once")
    parser.add_argument("--url", help="connect here instead of starting a node (needs --pid)")
    parser.add_argument("--pid", type=int, help="with --url: the process whose RSS to read")
    args = parser.parse_args(argv)
    steps = sorted({int(s) for s in args.steps.split(",")})
    if not steps or steps[0] < 1 or steps[-1] > MAX_CLIENTS:
        raise SystemExit(f"measure: steps must be between 1 and {MAX_CLIENTS}")
    if (args.url is None) != (args.pid is None):
        raise SystemExit("measure: --url and --pid go together")

    # Each client is a socket here and one in the node (which inherits this).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < steps[-1] + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, steps[-1] * 2 + 256), hard))

    if args.url:
        print(f"measuring pid {args.pid} while clients connect to {args.url}", flush=True)
        samples = asyncio.run(measure(args.pid, args.url, steps, args.rooms, args.parallel))
        _report(samples, f"pid {args.pid}")
    else:
        _report(_measure_own_node(args, steps), "node")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
