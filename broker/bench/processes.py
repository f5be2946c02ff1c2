"""Processes a benchmark starts (broker nodes, the textbook server,
redis-server, workers), and the promise that every one of them ends.

Every child gets a session of its own, so a Ctrl-C in the terminal reaches
only ``broker bench``, which then ends its children by PID: politely
(SIGTERM), then for sure (SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from broker.bench.procfs import process_tree

__all__ = ["Children", "free_port", "redis_server_binary", "wait_for_http", "wait_for_port"]


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Children:
    """The processes this run started, ended by PID in :meth:`end_all`."""

    def __init__(self) -> None:
        self._procs: list[tuple[str, subprocess.Popen[bytes], Path | None]] = []
        self._cleanups: list[Callable[[], None]] = []

    def add_cleanup(self, cleanup: Callable[[], None]) -> None:
        """Call ``cleanup`` in :meth:`end_all`, after the processes are ended
        (for helpers that start and end their own processes by PID, such as a
        :class:`~broker.bench.redis_cluster.LocalRedisCluster`)."""
        self._cleanups.append(cleanup)

    def start(
        self, name: str, argv: Sequence[str], *, pipes: bool = False
    ) -> subprocess.Popen[bytes]:
        """Start ``argv``; its output goes to a log file unless ``pipes`` (then
        stdin and stdout are pipes and stderr is inherited)."""
        log: Path | None = None
        if pipes:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
            )
        else:
            fd, path = tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")
            log = Path(path)
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=fd,
                    stderr=fd,
                    start_new_session=True,
                )
            finally:
                os.close(fd)
        self._procs.append((name, proc, log))
        return proc

    def start_python(self, name: str, *args: str, pipes: bool = False) -> subprocess.Popen[bytes]:
        """Start ``python -m ...`` with this interpreter."""
        return self.start(name, [sys.executable, *args], pipes=pipes)

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        """The last lines a child wrote to its log, for an error message."""
        for _, candidate, log in self._procs:
            if candidate is proc and log is not None:
                with contextlib.suppress(OSError):
                    return "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        return ""

    def end_all(self, grace: float = 3.0) -> None:
        """SIGTERM every live child, wait up to ``grace`` s, SIGKILL the rest,
        and then every descendant of theirs still alive.

        Why the descendants: a ``broker serve --workers N`` child is a
        supervisor; killed before its workers exit, it would leave them
        running as orphans.
        """
        descendants = [d for _, proc, _ in self._procs for d in _descendants(proc.pid)]
        for _, proc, _ in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _, proc, _ in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        for pid, started in descendants:
            # The start time tells our process from a later one given its PID.
            if _start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for _, proc, log in self._procs:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            if log is not None:
                with contextlib.suppress(OSError):
                    log.unlink()
        self._procs.clear()
        cleanups, self._cleanups = self._cleanups, []
        for cleanup in cleanups:
            cleanup()


def _start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (None: no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[19])  # field 22 of proc(5)


def _descendants(pid: int) -> list[tuple[int, int]]:
    """Every live descendant of ``pid``, with its start time."""
    found = []
    for child in process_tree(pid)[1:]:
        started = _start_time(child)
        if started is not None:
            found.append((child, started))
    return found


async def wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Wait until something accepts TCP connections on loopback ``port``.

    Raises:
        RuntimeError: ``proc`` exited first.

    The caller bounds it with a timeout.
    """
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            # Polling: another program's readiness is no event we can await.
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


async def wait_for_http(port: int, path: str, proc: subprocess.Popen[bytes]) -> None:
    """Wait until ``GET path`` on loopback ``port`` answers 200.

    Raises:
        RuntimeError: ``proc`` exited first.

    The caller bounds it with a timeout.
    """
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode}")
        if await _http_status(port, path) == 200:
            return
        await asyncio.sleep(0.05)


async def _http_status(port: int, path: str) -> int:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        status_line = await reader.readline()
    except OSError:
        return 0
    finally:
        writer.close()
    parts = status_line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0


def redis_server_binary() -> str | None:
    """The ``redis-server`` on PATH, if any."""
    return shutil.which("redis-server")
