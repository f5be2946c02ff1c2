#!/usr/bin/env python3
"""Run the scaled topology of ``deploy/docker-compose.yml`` as local processes.

    deploy/local-cluster [--nodes 3] [--port 8080] [--base-port 8765] [--redis-cluster]

starts a redis-server (on a free port, unless ``--redis-url`` names one;
with ``--redis-cluster``, a Redis Cluster of 3 masters with 1 replica each,
real ``redis-server --cluster-enabled yes`` processes, and the nodes run with
``--redis-cluster``),
``--nodes`` broker nodes on consecutive ports from ``--base-port``, and nginx
in front of them, its config rendered from ``deploy/nginx/roomcast.conf.template``
(the template docker compose uses) with local addresses. nginx serves the demo
page from ``deploy/demo`` and proxies ``/ws`` and ``/healthz`` to the nodes.

Invariants: every process it starts is its child, in a process group of its
own (so a terminal's Ctrl-C reaches only this script, which stops them in
order), and is stopped by its PID on Ctrl-C or SIGTERM; on Linux a child also
gets SIGTERM should this script die without cleaning up. nginx runs in the
foreground with its pid file, logs and temp files in a state directory, so it
needs no root and no system config. A node that exits leaves the others
serving (that is the point of the demo); nginx or Redis exiting stops all,
except that one server of a Redis Cluster exiting is only reported (its
replica takes over: the failover demo).

Nodes take every other setting from the ``BROKER_*`` environment variables,
as ``broker serve`` does. Needs only the standard library and an installed
``broker`` (run it with the Python that has roomcast installed).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.bench.redis_cluster import LocalRedisCluster

__all__ = ["main", "render_template", "upstream_servers"]

DEPLOY = Path(__file__).resolve().parent
TEMPLATE = DEPLOY / "nginx" / "roomcast.conf.template"
DEMO = DEPLOY / "demo"
SDK = DEPLOY.parent / "sdk" / "typescript"
DEMO_BUNDLE = DEMO / "roomcast.js"
PLACEHOLDER = re.compile(r"\$\{(ROOMCAST_[A-Z0-9_]+)\}")
STOP_TIMEOUT = 20.0

# The part of nginx.conf that the nginx image provides in docker compose:
# here every path lives in the state directory.
MAIN_CONF = """\
# Written by deploy/local-cluster for this run only.
{user}
worker_processes 1;
worker_rlimit_nofile 32768;
daemon off;
pid {state}/nginx.pid;
error_log {state}/nginx-error.log notice;

events {{
    # Two per proxied WebSocket: about 8,000 clients.
    worker_connections 16384;
}}

http {{
    access_log {state}/nginx-access.log;
    client_body_temp_path {state}/nginx-temp/body;
    proxy_temp_path {state}/nginx-temp/proxy;
    fastcgi_temp_path {state}/nginx-temp/fastcgi;
    uwsgi_temp_path {state}/nginx-temp/uwsgi;
    scgi_temp_path {state}/nginx-temp/scgi;
    include {state}/roomcast.conf;
}}
"""


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Substitute ``${ROOMCAST_*}`` placeholders, as the nginx image's envsubst does.

    Only ``ROOMCAST_*`` names are placeholders (the compose file sets
    ``NGINX_ENVSUBST_FILTER=^ROOMCAST_``), so nginx's own ``$variables`` stay.

    Raises:
        KeyError: the template names a placeholder that ``values`` lacks.
    """

    def substitute(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return PLACEHOLDER.sub(substitute, template)


def upstream_servers(addresses: Iterable[str]) -> str:
    """The ``ROOMCAST_UPSTREAM_SERVERS`` value for ``host:port`` addresses."""
    return " ".join(f"server {address};" for address in addresses)


class _Stop(Exception):
    """Raised by the SIGINT/SIGTERM handler to unwind into the cleanup."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def _child_setup() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when we die (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def setup() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return setup


@dataclass
class Child:
    """One process this script started."""

    name: str
    kind: str  # "redis", "shard" (a server of a Redis Cluster), "node" or "lb"
    url: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        """Its process id."""
        return self.process.pid


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def _find_binary(name: str, given: str | None) -> str:
    if given:
        return given
    # nginx lives in sbin, which a non-root PATH often lacks.
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    found = shutil.which(name, path=path)
    if found is None:
        raise SystemExit(f"local-cluster: {name} not found; install it (apt-get install {name})")
    return found


class Cluster:
    """The processes of one run, started in order and stopped in reverse."""

    def __init__(self, args: argparse.Namespace, state: Path) -> None:
        self.args = args
        self.state = state
        self.children: list[Child] = []
        self._preexec = _child_setup()
        # Found before anything starts, so a missing binary leaves nothing behind.
        self.nginx = _find_binary("nginx", args.nginx)
        self.redis_server = (
            None if args.redis_url else _find_binary("redis-server", args.redis_server)
        )
        self.redis_cluster: LocalRedisCluster | None = None

    def _spawn(self, name: str, kind: str, url: str, argv: Sequence[str]) -> Child:
        log = (self.state / f"{name}.log").open("ab")
        with log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                process_group=0,
                preexec_fn=self._preexec,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        child = Child(name, kind, url, process)
        self.children.append(child)
        return child

    def _wait_until(self, child: Child, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.args.start_timeout
        while not ready():
            if child.process.poll() is not None:
                raise SystemExit(
                    f"local-cluster: {child.name} exited with {child.process.returncode}; "
                    f"see {self.state / (child.name + '.log')}"
                )
            if time.monotonic() > deadline:
                raise SystemExit(f"local-cluster: {child.name}: {what} within the timeout")
            time.sleep(0.05)

    def start_redis(self) -> str:
        """Start redis-server unless ``--redis-url`` names one; return the URL."""
        if self.args.redis_url:
            return str(self.args.redis_url)
        host = self.args.host
        port = self.args.redis_port or _free_port(host)
        url = f"redis://{host}:{port}/0"
        assert self.redis_server is not None
        # Pub/sub only: nothing is persisted, and it listens on this host alone.
        argv = [
            self.redis_server,
            "--port",
            str(port),
            "--bind",
            host,
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        argv += ["--dir", str(self.state), "--logfile", ""]
        child = self._spawn("redis", "redis", url, argv)
        self._wait_until(child, lambda: _accepts(host, port), "no TCP listener")
        return url

    def start_redis_cluster(self) -> str:
        """Start a Redis Cluster (``--cluster-masters`` masters, 1 replica each);
        return its seed list for ``--redis-cluster``."""
        from broker.bench.redis_cluster import LocalRedisCluster

        cluster = LocalRedisCluster(
            masters=self.args.cluster_masters,
            replicas=1,
            host=self.args.host,
            redis_server=self.redis_server,
            log_dir=self.state,
            preexec=self._preexec,
        )
        # Known before it starts, so that a start cut short is cleaned up too.
        self.redis_cluster = cluster
        try:
            cluster.start(self.args.start_timeout * 2)
        except RuntimeError as error:
            raise SystemExit(f"local-cluster: Redis Cluster: {error}") from None
        roles = {
            shard.master.port: f"master, slots {shard.slot_text}" for shard in cluster.shards()
        }
        for index, server in enumerate(cluster.servers):
            role = roles.get(server.port, "replica")
            child = Child(f"redis-{index + 1}", "shard", server.url, server.process)
            self.children.append(child)
            print(f"started  {child.name:<8} pid {child.pid}  {child.url} ({role})", flush=True)
        return cluster.seed_list

    def start_node(self, index: int, redis_url: str) -> Child:
        """Start broker node ``node-<index+1>`` on ``base_port + index``
        (on the cluster whose seeds ``redis_url`` lists, with ``--redis-cluster``)."""
        port = self.args.base_port + index
        name = f"node-{index + 1}"
        http = f"http://{self.args.host}:{port}"
        option = "--redis-cluster" if self.args.redis_cluster else "--redis-url"
        argv = [sys.executable, "-m", "broker", "serve", "--host", self.args.host]
        argv += ["--port", str(port), option, redis_url, "--node-id", name]
        child = self._spawn(name, "node", f"ws://{self.args.host}:{port}/ws", argv)
        self._wait_until(child, lambda: _http_status(http + "/healthz") == 200, "not healthy")
        return child

    def start_lb(self, node_ports: Sequence[int]) -> Child:
        """Render the shared template for these nodes and start nginx in front."""
        host, port = self.args.host, self.args.port
        (self.state / "nginx-temp").mkdir(exist_ok=True)
        values = {
            "ROOMCAST_LISTEN": f"{host}:{port}",
            "ROOMCAST_UPSTREAM_SERVERS": upstream_servers(f"{host}:{p}" for p in node_ports),
            "ROOMCAST_DEMO_ROOT": str(DEMO),
        }
        (self.state / "roomcast.conf").write_text(render_template(TEMPLATE.read_text(), values))
        # As root, nginx would switch its workers to "nobody", who may not read
        # the repository or the state directory: keep whoever started us.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
        conf = self.state / "nginx.conf"
        conf.write_text(MAIN_CONF.format(user=user, state=self.state))
        # -e: the error log before nginx.conf is read, which would default to /var/log.
        argv = [
            self.nginx,
            "-p",
            str(self.state),
            "-c",
            str(conf),
            "-e",
            str(self.state / "lb.log"),
        ]
        url = f"http://{host}:{port}/"
        child = self._spawn("lb", "lb", url, argv)
        self._wait_until(child, lambda: _http_status(url + "healthz") == 200, "not proxying")
        return child

    def stop(self) -> None:
        """Stop in reverse order of dependence: LB, then nodes (1001 to clients), then Redis."""
        for kind in ("lb", "node", "redis", "shard"):
            group = [c for c in self.children if c.kind == kind and c.process.poll() is None]
            for child in group:
                child.process.send_signal(signal.SIGTERM)
            for child in group:
                try:
                    child.process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    child.process.kill()
                    child.process.wait()
                print(f"stopped  {child.name:<8} pid {child.pid}", flush=True)
        if self.redis_cluster is not None:
            # Ends any server a cut-short start left (by PID) and removes its files.
            self.redis_cluster.stop()

    def watch(self) -> int:
        """Block until nginx or Redis exits (return 1); report nodes that exit."""
        while True:
            # WNOWAIT: learn who exited without reaping it, so Popen still can.
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:
                return 1
            if info is None:  # pragma: no cover - only with WNOHANG
                continue
            child = next(c for c in self.children if c.pid == info.si_pid)
            code = child.process.wait()
            print(f"exited   {child.name:<8} pid {child.pid} with {code}", flush=True)
            if child.kind == "node":
                continue
            if child.kind == "shard" and any(
                c.kind == "shard" and c.process.poll() is None for c in self.children
            ):
                continue  # a replica takes over; the nodes follow the cluster
            return 1


def build_demo_bundle() -> None:
    """Build the SDK the demo page imports (``sdk/typescript`` with npm, its
    browser build copied to ``deploy/demo/roomcast.js``) when it is missing
    or older than the SDK's sources; without npm, say so and go on."""
    sources = [*(SDK / "src").rglob("*.ts"), SDK / "package-lock.json"]
    if DEMO_BUNDLE.exists() and all(
        p.stat().st_mtime <= DEMO_BUNDLE.stat().st_mtime for p in sources
    ):
        return
    npm = shutil.which("npm")
    if npm is None:
        print(
            "local-cluster: npm not found: the demo page needs the TypeScript SDK built "
            "(install Node.js 20+ and npm)",
            file=sys.stderr,
            flush=True,
        )
        return
    print("local-cluster: building the demo's SDK (sdk/typescript)", file=sys.stderr, flush=True)
    steps = [["run", "build"]]
    if not (SDK / "node_modules" / ".package-lock.json").exists():
        steps.insert(0, ["ci", "--no-audit", "--no-fund"])
    for step in steps:
        subprocess.run([npm, *step], cwd=SDK, check=True, stdout=subprocess.DEVNULL)
    shutil.copyfile(SDK / "dist" / "roomcast.min.js", DEMO_BUNDLE)


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="local-cluster",
        description="Run Redis, N broker nodes and nginx locally, as deploy/docker-compose.yml "
        "does in containers. Ctrl-C or SIGTERM stops everything.",
    )
    parser.add_argument("--nodes", type=int, default=3, help="broker nodes (default 3)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind everything to")
    parser.add_argument("--port", type=int, default=8080, help="load balancer port (8080)")
    parser.add_argument("--base-port", type=int, default=8765, help="first node's port (8765)")
    parser.add_argument("--redis-port", type=int, default=0, help="Redis port (default: free)")
    redis = parser.add_mutually_exclusive_group()
    redis.add_argument("--redis-url", help="use this Redis rather than starting one")
    redis.add_argument(
        "--redis-cluster",
        action="store_true",
        help="start a Redis Cluster (--cluster-masters masters, 1 replica each) and run the "
        "nodes on it with --redis-cluster",
    )
    parser.add_argument(
        "--cluster-masters",
        type=int,
        default=3,
        help="masters of --redis-cluster (default 3, the least Redis Cluster allows)",
    )
    parser.add_argument("--redis-server", help="redis-server binary (default: from PATH)")
    parser.add_argument("--nginx", help="nginx binary (default: from PATH or /usr/sbin)")
    parser.add_argument("--state-dir", type=Path, help="keep config and logs here (default: temp)")
    parser.add_argument("--start-timeout", type=float, default=15.0, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Start the cluster, print where it is, and serve until told to stop."""
    args = _parser().parse_args(argv)
    if args.nodes < 1:
        raise SystemExit("local-cluster: --nodes must be at least 1")
    if args.cluster_masters < 3:
        raise SystemExit("local-cluster: --cluster-masters must be at least 3")
    if importlib.util.find_spec("broker") is None:
        raise SystemExit(
            f"local-cluster: {sys.executable} cannot import broker; run this with the Python "
            "that has roomcast installed (activate its virtualenv)"
        )
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="roomcast-cluster-"))
    state.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(args, state.resolve())
    code = 1
    try:
        if args.redis_cluster:
            redis_url = cluster.start_redis_cluster()
        else:
            redis_url = cluster.start_redis()
            for child in cluster.children:
                print(f"started  {child.name:<8} pid {child.pid}  {child.url}", flush=True)
        nodes = [cluster.start_node(i, redis_url) for i in range(args.nodes)]
        for child in nodes:
            print(f"started  {child.name:<8} pid {child.pid}  {child.url}", flush=True)
        build_demo_bundle()
        lb = cluster.start_lb([args.base_port + i for i in range(args.nodes)])
        print(f"started  {lb.name:<8} pid {lb.pid}  {lb.url} (nginx)", flush=True)
        print(f"logs     {cluster.state}", flush=True)
        print(f"ready    open {lb.url}  (Ctrl-C stops everything)", flush=True)
        code = cluster.watch()
    except _Stop as stop:
        print(f"stopping on {stop}", flush=True)
        code = 0
    finally:
        # A second signal must not cut the cleanup short; it is bounded anyway.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cluster.stop()
        if args.state_dir is None:
            with contextlib.suppress(OSError):
                shutil.rmtree(state)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
