"""A local Redis Cluster of real ``redis-server --cluster-enabled yes``
processes, for ``broker bench --spawn-redis-cluster``,
``deploy/local-cluster --redis-cluster`` and the tests.

Each server gets a free loopback port whose cluster bus port (port + 10000)
is free too, a private working directory (``nodes.conf`` lives there), and
nothing persisted. ``redis-cli --cluster create`` assigns the slots and the
replicas; :meth:`LocalRedisCluster.start` returns once every node agrees the
cluster is ``ok``. Every process is ended by PID in :meth:`stop`.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ClusterServer",
    "ClusterShard",
    "LocalRedisCluster",
    "cluster_port",
    "parse_commandstats",
]

_BUS_OFFSET = 10000
"""Redis Cluster's bus listens on the client port + 10000."""


def cluster_port(host: str = "127.0.0.1") -> int:
    """A free port on ``host`` whose cluster bus port is free as well."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port + _BUS_OFFSET > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind((host, port + _BUS_OFFSET))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair (port, port + 10000) for a cluster node")


@dataclass
class ClusterServer:
    """One ``redis-server`` of the cluster."""

    port: int
    process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        """``redis://HOST:PORT``."""
        return f"redis://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    @property
    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.process.poll() is None


@dataclass(frozen=True)
class ClusterShard:
    """One master, its replicas, and the slot ranges it serves."""

    master: ClusterServer
    replicas: tuple[ClusterServer, ...]
    slots: tuple[tuple[int, int], ...]
    """Inclusive ``(first, last)`` ranges."""

    def owns(self, slot: int) -> bool:
        """Whether ``slot`` is one of this shard's."""
        return any(low <= slot <= high for low, high in self.slots)

    @property
    def slot_text(self) -> str:
        """The ranges as ``CLUSTER NODES`` writes them: ``0-5460 6000``."""
        return " ".join(f"{low}-{high}" if high > low else str(low) for low, high in self.slots)


def parse_commandstats(text: str) -> dict[str, tuple[int, int]]:
    """``INFO commandstats`` as ``{command: (calls, usec)}`` (commands in lower case;
    subcommands as ``script|load``)."""
    stats: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        name, _, values = line.strip().partition(":")
        if not name.startswith("cmdstat_"):
            continue
        fields = dict(part.split("=", 1) for part in values.split(",") if "=" in part)
        stats[name.removeprefix("cmdstat_")] = (int(fields["calls"]), int(fields["usec"]))
    return stats


@dataclass
class LocalRedisCluster:
    """``masters`` masters with ``replicas`` replicas each, on loopback."""

    masters: int = 3
    replicas: int = 1
    host: str = "127.0.0.1"
    redis_server: str | None = None
    """The ``redis-server`` binary (default: from PATH)."""
    redis_cli: str | None = None
    """The ``redis-cli`` binary (default: from PATH)."""
    node_timeout_ms: int = 1000
    """``cluster-node-timeout``: how soon a dead master's replica takes over."""
    extra_args: Sequence[str] = ()
    """More ``redis-server`` options for every server (ACL files, ...)."""
    log_dir: Path | None = None
    """Write each server's log to ``redis-PORT.log`` here (default: discarded)."""
    preexec: Callable[[], None] | None = None
    """Run in each server's process before it starts (e.g. a parent-death signal)."""
    servers: list[ClusterServer] = field(default_factory=list)
    _workdir: Path | None = None
    _stopped: bool = False

    @property
    def seeds(self) -> list[str]:
        """Every server's URL (any of them is a seed)."""
        return [server.url for server in self.servers]

    @property
    def seed_list(self) -> str:
        """The URLs joined by commas, as ``--redis-cluster`` takes them."""
        return ",".join(self.seeds)

    @property
    def pids(self) -> list[int]:
        """Every server's PID."""
        return [server.pid for server in self.servers]

    def start(self, timeout: float = 30.0) -> LocalRedisCluster:
        """Start the servers, create the cluster, and wait until it is ``ok``.

        Raises:
            RuntimeError: a binary is missing, a server exited, or the cluster
                did not become ``ok`` within ``timeout`` seconds.
        """
        server = self.redis_server or shutil.which("redis-server")
        cli = self.redis_cli or shutil.which("redis-cli")
        if server is None or cli is None:
            raise RuntimeError("redis-server and redis-cli are needed for a Redis Cluster")
        self.redis_cli = cli
        self._workdir = Path(tempfile.mkdtemp(prefix="roomcast-redis-cluster-"))
        try:
            for index in range(self.masters * (1 + self.replicas)):
                self.servers.append(self._start_server(server, index))
            for member in self.servers:
                _wait_for_port(self.host, member.port, member.process, timeout)
            self._create(timeout)
            self.wait_until_ok(timeout)
            self._wait_for_replicas(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_server(self, binary: str, index: int) -> ClusterServer:
        assert self._workdir is not None
        if self._stopped:
            # stop() ran from another thread while start() was under way.
            raise RuntimeError("the Redis Cluster was stopped while it started")
        port = cluster_port(self.host)
        workdir = self._workdir / str(port)
        workdir.mkdir()
        log = str(self.log_dir / f"redis-{port}.log") if self.log_dir is not None else ""
        process = subprocess.Popen(
            [
                binary,
                "--port", str(port),
                "--bind", self.host,
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(workdir / "nodes.conf"),
                "--cluster-node-timeout", str(self.node_timeout_ms),
                "--save", "",
                "--appendonly", "no",
                "--protected-mode", "no",
                "--dir", str(workdir),
                "--enable-debug-command", "local",
                # A replica syncs at once (the default waits 5 s for more
                # replicas), so that it can take over from the first second.
                "--repl-diskless-sync-delay", "0",
                "--logfile", log,
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=self.preexec,
        )  # fmt: skip
        return ClusterServer(port=port, process=process, host=self.host)

    def _create(self, timeout: float) -> None:
        assert self.redis_cli is not None
        result = subprocess.run(
            [
                self.redis_cli,
                "--cluster", "create",
                *(f"{s.host}:{s.port}" for s in self.servers),
                "--cluster-replicas", str(self.replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {result.stdout}{result.stderr}")

    def cli(self, port: int, *args: str, timeout: float = 10.0) -> str:
        """Run ``redis-cli -p PORT ARGS...`` against one server; its output."""
        assert self.redis_cli is not None
        result = subprocess.run(
            [self.redis_cli, "-h", self.host, "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return result.stdout.strip()

    def info(self, port: int) -> dict[str, str]:
        """``CLUSTER INFO`` of one server as a dict."""
        pairs = (line.split(":", 1) for line in self.cli(port, "cluster", "info").splitlines())
        return {key.strip(): value.strip() for key, value in (p for p in pairs if len(p) == 2)}

    def wait_until_ok(self, timeout: float = 30.0) -> None:
        """Wait until every live server reports ``cluster_state:ok`` and all
        16384 slots assigned.

        Raises:
            RuntimeError: it did not within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            live = [s for s in self.servers if s.alive]
            states = [self.info(s.port) for s in live]
            if live and all(
                state.get("cluster_state") == "ok" and state.get("cluster_slots_ok") == "16384"
                for state in states
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis Cluster not ok after {timeout} s: {states}")
            # Polling: cluster gossip converging is no event we can await.
            time.sleep(0.1)

    def _wait_for_replicas(self, timeout: float) -> None:
        """Wait until every replica's link to its master is up (a replica that
        never synced would not take over)."""
        deadline = time.monotonic() + timeout
        for member in self.servers:
            while self._role(member.port) == "slave":
                if "master_link_status:up" in self.cli(member.port, "info", "replication"):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replica on port {member.port} did not sync")
                time.sleep(0.05)

    def shards(self) -> list[ClusterShard]:
        """Every master that serves slots, with its replicas, as ``CLUSTER NODES``
        of the first live server says now."""
        live = next((s for s in self.servers if s.alive), None)
        if live is None:
            return []
        masters: dict[str, tuple[int, list[tuple[int, int]]]] = {}
        replicas: dict[str, list[int]] = {}
        for line in self.cli(live.port, "cluster", "nodes").splitlines():
            fields = line.split()
            if len(fields) < 8 or "fail" in fields[2]:
                continue
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            if "master" in fields[2]:
                ranges = []
                for part in fields[8:]:
                    low, _, high = part.partition("-")
                    if low.isdigit():  # not a "[slot->-node]" migration mark
                        ranges.append((int(low), int(high or low)))
                masters[fields[0]] = (port, ranges)
            elif "slave" in fields[2]:
                replicas.setdefault(fields[3], []).append(port)
        shards = [
            ClusterShard(
                self.server(port),
                tuple(self.server(p) for p in sorted(replicas.get(node, []))),
                tuple(sorted(ranges)),
            )
            for node, (port, ranges) in masters.items()
            if ranges
        ]
        return sorted(shards, key=lambda shard: shard.slots[0])

    def commandstats(self, port: int) -> dict[str, tuple[int, int]]:
        """``INFO commandstats`` of one server: ``{command: (calls, usec)}``."""
        return parse_commandstats(self.cli(port, "info", "commandstats"))

    def master_ports(self) -> list[int]:
        """Ports of the live servers that are masters now."""
        return [s.port for s in self.servers if s.alive and self._role(s.port) == "master"]

    def _role(self, port: int) -> str:
        first = self.cli(port, "role").splitlines()
        return first[0].strip() if first else ""

    def master_of_slot(self, slot: int) -> int:
        """Port of the master serving ``slot`` (as the live servers see it)."""
        for server in self.servers:
            if not server.alive:
                continue
            for line in self.cli(server.port, "cluster", "nodes").splitlines():
                fields = line.split()
                if len(fields) < 9 or "master" not in fields[2] or "fail" in fields[2]:
                    continue
                for part in fields[8:]:
                    low, _, high = part.partition("-")
                    if low.isdigit() and int(low) <= slot <= int(high or low):
                        return int(fields[1].split("@")[0].rsplit(":", 1)[1])
            break
        raise RuntimeError(f"no master serves slot {slot}")

    def wait_for_new_master(self, slot: int, old_port: int, timeout: float = 30.0) -> int:
        """After ``old_port`` died, wait until a replica serves ``slot`` and the
        cluster is ``ok`` again; the new master's port.

        Raises:
            RuntimeError: no failover within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(RuntimeError):
                port = self.master_of_slot(slot)
                if port != old_port:
                    self.wait_until_ok(max(0.1, deadline - time.monotonic()))
                    return port
            if time.monotonic() > deadline:
                raise RuntimeError(f"no replica took slot {slot} over within {timeout} s")
            time.sleep(0.1)

    def server(self, port: int) -> ClusterServer:
        """The server on ``port``."""
        for candidate in self.servers:
            if candidate.port == port:
                return candidate
        raise KeyError(port)

    def kill(self, port: int) -> None:
        """SIGKILL one server (a crash)."""
        member = self.server(port)
        if member.alive:
            member.process.kill()
            member.process.wait(10)

    def stop(self) -> None:
        """End every server by PID (SIGTERM, then SIGKILL) and remove the files."""
        self._stopped = True
        for member in self.servers:
            if member.alive:
                member.process.terminate()
        for member in self.servers:
            try:
                member.process.wait(10)
            except subprocess.TimeoutExpired:
                member.process.kill()
                member.process.wait(10)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> LocalRedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_for_port(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server on port {port} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server on port {port} did not listen within {timeout} s")
        time.sleep(0.02)
