"""``broker serve --workers N``: N node processes on one port, supervised.

Each worker is an ordinary node (``python -m broker serve``) bound with
SO_REUSEPORT, so the kernel spreads new connections over them, and each is a
node of the cluster through Redis. The supervisor restarts a worker that
dies, with a growing delay while it keeps dying at once; on SIGTERM/SIGINT it
forwards the signal so every worker drains, and exits 0 when all exited 0. A
second signal kills the workers at once.

A worker whose first start exits with 2 was refused by its own checks (a bad
setting, a port it cannot bind, Redis refusing it): restarting would only
repeat the same line forever, so the supervisor stops the other workers and
exits 2 too. A worker that ran before and exits 2 on a restart (Redis away
for a moment) is restarted as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Mapping

from broker.config import OPTIONS, Config
from broker.node import new_node_id

__all__ = ["supervise", "worker_environment"]

log = logging.getLogger("broker.workers")

REFUSED = 2  # the exit code of a node that refused to start (one line on stderr)
RESTART_DELAY_MAX = 10.0
STABLE_AFTER = 5.0  # a worker that ran this long is not crash-looping


def worker_environment(
    config: Config, index: int, node_base: str, base: Mapping[str, str]
) -> dict[str, str]:
    """The environment of worker ``index``: every setting as ``BROKER_*``, and
    the node id ``{node_base}-w{index}``."""
    env = {key: value for key, value in base.items() if not key.startswith("BROKER_")}
    for option in OPTIONS:
        value = getattr(config, option.name)
        if value is None:
            continue
        env[option.env] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    env.update(BROKER_WORKERS="1", BROKER_REUSE_PORT="1", BROKER_NODE_ID=f"{node_base}-w{index}")
    return env


class _Worker:
    def __init__(self, config: Config, index: int, node_base: str) -> None:
        self.config = config
        self.index = index
        self.node_base = node_base
        self.process: asyncio.subprocess.Process | None = None
        self.delay = 0.5

    async def run(self, stopping: asyncio.Event) -> int:
        loop = asyncio.get_running_loop()
        first = True
        while True:
            started = loop.time()
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "broker",
                "serve",
                env=worker_environment(self.config, self.index, self.node_base, os.environ),
            )
            log.info("worker %d started (pid %d)", self.index, self.process.pid)
            code = await self.process.wait()
            if stopping.is_set():
                # A worker still importing when the signal came dies of it.
                return 0 if code in (-signal.SIGTERM, -signal.SIGINT) else code
            if first and code == REFUSED:
                return code
            first = False
            ran = loop.time() - started
            self.delay = 0.5 if ran > STABLE_AFTER else min(self.delay * 2, RESTART_DELAY_MAX)
            log.warning(
                "worker %d (pid %d) exited with %d after %.1fs; restarting in %.1fs",
                self.index,
                self.process.pid,
                code,
                ran,
                self.delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.delay)
            if stopping.is_set():
                return 0

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)


async def supervise(config: Config) -> int:
    """Run ``config.workers`` workers until SIGTERM/SIGINT; returns the exit code."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    node_base = config.node_id or new_node_id()
    workers = [_Worker(config, index, node_base) for index in range(config.workers)]

    def on_signal(signum: int) -> None:
        if stopping.is_set():
            log.warning("second signal: killing workers")
            for worker in workers:
                worker.signal(signal.SIGKILL)
            return
        log.info("draining %d workers", len(workers))
        stopping.set()
        for worker in workers:
            worker.signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    log.info("supervising %d workers on port %d", len(workers), config.port)
    runs = [loop.create_task(worker.run(stopping)) for worker in workers]
    for finished in asyncio.as_completed(runs):
        if await finished == REFUSED and not stopping.is_set():
            log.error("a worker refused to start (see its line above); stopping every worker")
            on_signal(signal.SIGTERM)
            await asyncio.gather(*runs)
            return REFUSED
    codes = [run.result() for run in runs]
    log.info("all workers exited: %s", codes)
    return 0 if all(code == 0 for code in codes) else 1
