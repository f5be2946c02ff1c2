"""``broker serve --workers N``: N node processes on one port, supervised.

Each worker is an ordinary node (``python -m broker serve``) bound with
SO_REUSEPORT, so the kernel spreads new connections over them, and each is a
node of the cluster through Redis. The supervisor restarts a worker that
dies, with a growing delay while it keeps dying at once; on SIGTERM/SIGINT it
forwards the signal so every worker drains, and exits 0 when all exited 0. A
second signal kills the workers at once.
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
    codes = await asyncio.gather(*(worker.run(stopping) for worker in workers))
    log.info("all workers exited: %s", codes)
    return 0 if all(code == 0 for code in codes) else 1
