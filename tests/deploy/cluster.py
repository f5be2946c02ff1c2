"""``deploy/local-cluster`` run as users run it, for the tests.

It is started on a free load-balancer port and a free run of node ports,
and its report (``started NAME pid PID URL`` lines, then ``ready``) tells the
tests where everything is.
"""

from __future__ import annotations

import os
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from tests.support.processes import REPO, free_port

__all__ = ["LocalCluster", "free_port_run", "pid_alive"]

SCRIPT = REPO / "deploy" / "local-cluster"
STARTED = re.compile(r"^started\s+(\S+)\s+pid (\d+)\s+(\S+)")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive ports that are all free right now."""
    # Below the kernel's ephemeral range (32768 and up): a port no outgoing
    # connection of a busy machine can take between this check and the bind.
    for _ in range(200):
        base = random.randrange(20000, 32768 - count)
        if all(_port_free(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no run of {count} free ports found")


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID still exists (and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


@dataclass
class LocalCluster:
    """A running ``deploy/local-cluster`` and what it reported."""

    nginx: str
    nodes: int = 3
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    """More options for the script (``--redis-cluster``)."""
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    pids: dict[str, int] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)
    _lines: queue.Queue[str | None] = field(default_factory=queue.Queue)

    @property
    def http(self) -> str:
        """The load balancer's base URL, ending in ``/``."""
        return self.urls["lb"]

    @property
    def ws(self) -> str:
        """The WebSocket URL through the load balancer."""
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self, timeout: float = 30.0) -> LocalCluster:
        """Run the script and wait until it reports ``ready``."""
        base = free_port_run(self.nodes)
        self.process = subprocess.Popen(
            [
                *(sys.executable, str(SCRIPT), "--nodes", str(self.nodes)),
                *("--port", str(self.port), "--base-port", str(base), "--nginx", self.nginx),
                *self.args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **self.env},
        )
        # A thread reads the report, so that waiting for a line has a deadline
        # (a buffered pipe and select() do not mix).
        threading.Thread(target=self._read_report, daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise TimeoutError("local-cluster not ready:\n" + "".join(self.output)) from None
            if line is None:
                self._lines.put(None)  # end of file stays seen (stop() waits for it)
                raise RuntimeError("local-cluster exited:\n" + "".join(self.output))
            if match := STARTED.match(line):
                name, pid, url = match.groups()
                self.pids[name] = int(pid)
                self.urls[name] = url
            if line.startswith("ready"):
                return self

    def wait_for_line(self, prefix: str, timeout: float = 20.0) -> str:
        """Wait until the script reports a line starting with ``prefix``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no {prefix!r} line:\n" + "".join(self.output)) from None
            if line is None:
                self._lines.put(None)  # end of file stays seen (stop() waits for it)
                raise RuntimeError("local-cluster exited:\n" + "".join(self.output))
            if line.startswith(prefix):
                return line

    def _read_report(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def node_pid(self, node_id: str) -> int:
        """The PID of the node whose welcome says ``node_id``."""
        return self.pids[node_id]

    def stop(self, timeout: float = 40.0) -> int:
        """SIGTERM the script (as Ctrl-C would) and return its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(10)
        # The reader thread ends at end of file, after the last line.
        while self._lines.get(timeout=10) is not None:
            pass
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code

    def cleanup(self) -> None:
        """Stop the script if it still runs (it stops its own children)."""
        if self.process is not None and self.process.returncode is None:
            self.stop()
