"""Real processes for integration tests: redis-server and broker nodes.

Every process is started on a free loopback port and stopped by its PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts TCP connections on ``port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on port {port}") from None
            time.sleep(0.02)


@dataclass
class RedisServer:
    """A redis-server of our own on a free port, with nothing persisted."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    extra_args: Sequence[str] = ()
    """More ``redis-server`` options (``--requirepass``, ``--tls-port``...),
    after ours: a later option wins."""

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start it and wait until it accepts connections."""
        assert REDIS_SERVER is not None, "redis-server is not installed"
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--protected-mode", "no",
                "--dir", tempfile.gettempdir(),
                "--enable-debug-command", "local",
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_for_port(self.port)
        except BaseException:
            self.kill()  # reaped, not left to warn at garbage collection
            raise
        return self

    def kill(self) -> None:
        """SIGKILL it (a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM it and wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def cli(self, *args: str) -> str:
        """Run ``redis-cli`` against it and return its output."""
        cli = shutil.which("redis-cli")
        assert cli is not None
        result = subprocess.run(
            [cli, "-p", str(self.port), *args], capture_output=True, text=True, timeout=10
        )
        return result.stdout.strip()


@dataclass
class BrokerProcess:
    """A broker node started as users start it: ``python -m broker serve``."""

    args: Sequence[str] = ()
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        """The WebSocket URL of this node."""
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        """The HTTP base URL of this node."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> BrokerProcess:
        """Start it and wait until ``/healthz`` answers 200."""
        self.launch()
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while self.health()[0] != 200:
            if self.process.poll() is not None:
                raise RuntimeError(f"broker exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"broker did not become healthy:\n{self.log()}")
            time.sleep(0.05)
        return self

    def launch(self) -> BrokerProcess:
        """Start it without waiting for anything (for a node that must not get ready)."""
        fd, name = tempfile.mkstemp(prefix="broker-", suffix=".log")
        self.log_path = Path(name)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "broker", "serve", "--port", str(self.port), *self.args],
            stdout=fd,
            stderr=fd,
            cwd=REPO,
            env=env,
        )
        os.close(fd)
        return self

    def health(self) -> tuple[int, bytes]:
        """Status and body of ``GET /healthz`` (0 if nothing answers)."""
        return http_get(self.http + "/healthz")

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM it and return its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def cleanup(self) -> None:
        """Make sure it is gone and its log removed."""
        self.kill()
        if self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """``GET url``; returns (status, body), status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""
