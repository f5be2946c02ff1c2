#!/usr/bin/env python3
"""Measure redis-server's own CPU per say of the publish script.

    .venv/bin/python deploy/measure_publish_script.py [--rounds 9] [--calls 150000]

(in the project's environment: it builds the publish script's arguments with
the broker's own code).

Starts its own redis-server on a free loopback port (``--save ''``, no AOF)
and loads three scripts: the publish script a node calls for every say
(:mod:`broker.backends.redis.scripts`, called with exactly the arguments a
node sends for a room it has published to before, built by
:class:`~broker.backends.redis.history.History`), the issue's naive script
(INCR, XADD with exact MAXLEN, two EXPIREs, PUBLISH, given the envelope a
node would send it) and an empty script with the publish script's arguments
(the floor: what any EVALSHA with those arguments costs). One subscriber,
in this process, SSUBSCRIBEs the room's channel and SUBSCRIBEs the naive
script's and reads everything. Each room's history is filled to
``--history-size`` first, so the measured says run as in a busy room (the
history trimmed as it grows past its size).

Then, ``--rounds`` times, the three in turn: ``redis-benchmark`` sends
``--calls`` EVALSHAs from ``--clients`` connections pipelined
``--pipeline`` deep, and redis-server's user + system CPU (``/proc/PID/stat``,
all its threads) before and after gives the CPU per call. Every run is
checked: Redis counted at least ``--calls`` more EVALSHAs (redis-benchmark
rounds up to whole pipelines) and no failure, the room's offset moved by as
many, and the subscriber received every message.
It prints one line per run and the medians, and the publish script's cost
as a fraction of the naive script's of the same rounds. Linux only
(``/proc``); needs ``redis-server`` and ``redis-benchmark`` on PATH (or
``--redis-server``/``--redis-benchmark``). Bounded: at most 10,000,000 calls
per run and 50 rounds; it stops its redis-server by PID.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec
import redis
import redis.asyncio as aioredis

from broker.backends.redis.envelope import RoomKeys, pack, pack_head
from broker.backends.redis.history import History
from protocol import Message, encode

__all__ = ["NAIVE_SCRIPT", "Candidate", "Measurement", "main", "measure"]

MAX_CALLS = 10_000_000
MAX_ROUNDS = 50
NAMESPACE = "measure"
ROOM = "lobby"
NAIVE_ROOM = "naive"

NAIVE_SCRIPT = """
local o = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], '*', 'm', ARGV[1])
redis.call('EXPIRE', KEYS[1], 86400)
redis.call('EXPIRE', KEYS[2], 600)
redis.call('PUBLISH', KEYS[3], ARGV[1])
return o
"""
"""The issue's naive script: KEYS offset, stream, channel; ARGV envelope, size."""

EMPTY_SCRIPT = "return 1"


class Candidate(NamedTuple):
    """A script measured: its source and the words after ``EVALSHA sha``."""

    name: str
    source: bytes
    words: tuple[bytes, ...]
    """``numkeys``, the keys, the arguments."""
    publishes: bool
    """Whether every call publishes one message to the subscriber."""


class Measurement(NamedTuple):
    """One run of one candidate."""

    name: str
    cpu_us: float
    """redis-server CPU per call, in µs."""
    rate: float
    """Calls per second redis-benchmark reported."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    with open(f"/proc/{pid}/stat") as stat:
        # Fields after the command name (which may hold spaces): 14 and 15
        # of the whole line are the 12th and 13th after its ')'.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Subscriber(threading.Thread):
    """One pub/sub connection that reads everything and counts the messages."""

    def __init__(self, port: int, shard_channel: bytes, channel: bytes) -> None:
        super().__init__(daemon=True)
        self._sock = socket.create_connection(("127.0.0.1", port))
        for command, name in ((b"SSUBSCRIBE", shard_channel), (b"SUBSCRIBE", channel)):
            self._sock.sendall(_resp(command, name))
        self.received = 0
        """Messages read (``message`` and ``smessage`` pushes)."""
        self._changed = threading.Condition()

    def run(self) -> None:
        tail = b""
        while chunk := self._recv():
            data = tail + chunk
            # A push is *3 $7 message / $8 smessage, channel, payload; the
            # payloads never hold \r (JSON and the envelope's \n lines).
            count = data.count(b"\r\nmessage\r\n") + data.count(b"\r\nsmessage\r\n")
            tail = data[-12:]
            # The tail is searched again with the next chunk: uncount it.
            count -= tail.count(b"\r\nmessage\r\n") + tail.count(b"\r\nsmessage\r\n")
            with self._changed:
                self.received += count
                self._changed.notify_all()

    def _recv(self) -> bytes:
        try:
            return self._sock.recv(1 << 16)
        except OSError:
            return b""

    def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` messages were read; False after ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: self.received >= count, timeout)

    def close(self) -> None:
        """Close the connection (the thread ends)."""
        self._sock.close()


def _evalsha(client: redis.Redis, words: Sequence[bytes | int]) -> Any:
    """EVALSHA with ``words`` (SHA, number of keys, keys, arguments), as bytes."""
    sha, numkeys, *rest = words
    # redis-py types the SHA and the arguments as str: bytes go as they are.
    loose: Any = (sha, *rest)
    return client.evalsha(loose[0], int(numkeys), *loose[1:])


def _resp(*words: bytes) -> bytes:
    out = [b"*%d\r\n" % len(words)]
    for word in words:
        out.append(b"$%d\r\n%s\r\n" % (len(word), word))
    return b"".join(out)


def candidates(size: int, ttl: float, meta_ttl: float, port: int) -> list[Candidate]:
    """The floor, the naive script and the publish script, with the arguments
    a node sends for a room it published to before."""
    client = redis.Redis(port=port)
    # History builds the publish script's EVALSHA as a node does; its client
    # is only used by reads, never here.
    history = History(aioredis.Redis(port=port), NAMESPACE, size, ttl, meta_ttl)
    keys = RoomKeys.of(NAMESPACE, ROOM)
    node, exclude = b"n-8f3a2c", "s-5d1e9b7a04c2"
    published_at = 1_764_547_200.123456
    payload = encode(
        Message(
            room=ROOM,
            from_=exclude,
            body=msgspec.Raw(b'{"text":"hello, everyone: how is it going?"}'),
        )
    )
    head = pack_head(node, exclude, published_at)
    client.script_load(history.publish_script.source)
    # The first say creates the position (and refreshes expiry); the node
    # then remembers the epoch and sends what every later say sends.
    first, position = history.publish(keys, head, payload)
    position(_evalsha(client, first[1:]))
    args, _ = history.publish(keys, head, payload)
    assert args[0] == b"EVALSHA" and args[1] == history.publish_script.sha
    words = tuple(bytes(str(word), "ascii") if isinstance(word, int) else word for word in args[2:])
    naive_keys = RoomKeys.of(NAMESPACE, NAIVE_ROOM)
    envelope = pack(node, exclude, published_at, payload)
    return [
        Candidate("empty", EMPTY_SCRIPT.encode(), words, publishes=False),
        Candidate(
            "naive",
            NAIVE_SCRIPT.strip().encode(),
            (b"3", *naive_keys, envelope, str(size).encode()),
            publishes=True,
        ),
        Candidate("publish", history.publish_script.source, words, publishes=True),
    ]


class _Redis:
    """The redis-server of one measurement, and what is needed to check it."""

    def __init__(self, server: str) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen(
            [
                *(server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", tempfile.gettempdir()),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit("measure: redis-server did not start") from None
                time.sleep(0.02)

    def evalsha_counts(self) -> tuple[int, int]:
        """EVALSHA calls and failed calls so far (INFO commandstats)."""
        stats: dict[str, Any] = self.client.info("commandstats").get("cmdstat_evalsha", {})
        return int(stats.get("calls", 0)), int(stats.get("failed_calls", 0)) + int(
            stats.get("rejected_calls", 0)
        )

    def stop(self) -> None:
        """Stop redis-server by its PID."""
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _benchmark(
    benchmark: str, port: int, sha: bytes, words: Sequence[bytes], args: argparse.Namespace
) -> float:
    command = [benchmark, "-p", str(port), "-c", str(args.clients), "-P", str(args.pipeline)]
    command += ["-n", str(args.calls), "-q", "EVALSHA"]
    result = subprocess.run(
        [os.fsencode(word) for word in command] + [sha, *words],
        capture_output=True,
        timeout=600,
    )
    # -q prints "EVALSHA ...: 163398.70 requests per second, p50=..." with \r progress.
    rates = re.findall(rb"([\d.]+) requests per second", result.stdout)
    if result.returncode != 0 or not rates:
        raise SystemExit(f"measure: redis-benchmark failed: {result.stderr.decode()!r}")
    return float(rates[-1])


def measure(
    redis_server: str,
    benchmark: str,
    args: argparse.Namespace,
    extra: Sequence[Candidate] = (),
) -> list[Measurement]:
    """Run every candidate ``args.rounds`` times, interleaved; every run checked."""
    server = _Redis(redis_server)
    subscriber: Subscriber | None = None
    try:
        runs = [*candidates(args.history_size, args.ttl, args.meta_ttl, server.port), *extra]
        shas = [server.client.script_load(c.source).encode() for c in runs]
        keys = RoomKeys.of(NAMESPACE, ROOM)
        subscriber = Subscriber(server.port, keys.channel, RoomKeys.of(NAMESPACE, NAIVE_ROOM)[2])
        subscriber.start()
        # Both subscriptions confirmed before anything is published.
        for _ in range(100):
            subscribed: Any = server.client.pubsub_shardnumsub(keys.channel)
            if subscribed[0][1] == 1:
                break
            time.sleep(0.02)
        published = 0
        # Fill every history to its size, so measured says also drop the oldest.
        for candidate, sha in zip(runs, shas, strict=True):
            if candidate.publishes:
                for _ in range(args.history_size + 1):
                    _evalsha(server.client, (sha, *candidate.words))
                published += args.history_size + 1
        results: list[Measurement] = []
        for round_ in range(args.rounds):
            for candidate, sha in zip(runs, shas, strict=True):
                offset = server.client.hvals(keys.position)
                calls, failed = server.evalsha_counts()
                before = cpu_seconds(server.process.pid)
                rate = _benchmark(benchmark, server.port, sha, candidate.words, args)
                cpu = cpu_seconds(server.process.pid) - before
                after_calls, after_failed = server.evalsha_counts()
                # redis-benchmark rounds up to whole pipelines: count what Redis ran.
                ran = after_calls - calls
                if ran < args.calls or after_failed != failed:
                    raise SystemExit(
                        f"measure: {candidate.name}: Redis ran {ran} EVALSHAs "
                        f"({after_failed - failed} failed) of {args.calls}"
                    )
                if candidate.name == "publish":
                    moved = int(server.client.hvals(keys.position)[0]) - int(offset[0])
                    if moved != ran:
                        raise SystemExit(f"measure: the offset moved by {moved}, not {ran}")
                if candidate.publishes:
                    published += ran
                    if not subscriber.wait_for(published, timeout=60):
                        raise SystemExit(
                            f"measure: the subscriber read {subscriber.received} "
                            f"of {published} messages"
                        )
                results.append(Measurement(candidate.name, cpu / ran * 1e6, rate))
                print(
                    f"round {round_ + 1}  {candidate.name:<8} {results[-1].cpu_us:6.2f} µs"
                    f"   {rate:>10,.0f} calls/s",
                    flush=True,
                )
        if subscriber.received != published:
            raise SystemExit(f"measure: {subscriber.received} messages read, {published} sent")
        return results
    finally:
        if subscriber is not None:
            subscriber.close()
        server.stop()


def _median(results: Sequence[Measurement], name: str) -> float:
    return statistics.median(r.cpu_us for r in results if r.name == name)


def report(results: Sequence[Measurement], names: Sequence[str] = ()) -> None:
    """Print the medians and the publish script's cost relative to the naive
    one: the ratio of the medians, and the median of each round's ratio (the
    steadier of the two on a busy machine: both runs of a round see much the
    same load)."""
    for name in ("empty", "naive", "publish", *names):
        print(f"median {name:<8} {_median(results, name):6.2f} µs per call")
    ratio = _median(results, "publish") / _median(results, "naive")
    rounds = zip(
        (r.cpu_us for r in results if r.name == "publish"),
        (r.cpu_us for r in results if r.name == "naive"),
        strict=True,
    )
    per_round = statistics.median(publish / naive for publish, naive in rounds)
    print(f"publish / naive: {ratio:.2f} (median of the rounds' ratios: {per_round:.2f})")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=9, help="runs of each script")
    parser.add_argument("--calls", type=int, default=150_000, help="EVALSHAs per run")
    parser.add_argument("--clients", type=int, default=8, help="redis-benchmark connections")
    parser.add_argument("--pipeline", type=int, default=32, help="calls in flight per connection")
    parser.add_argument("--history-size", type=int, default=100, help="messages kept per room")
    parser.add_argument("--ttl", type=float, default=600.0, help="--history-ttl, seconds")
    parser.add_argument("--meta-ttl", type=float, default=86_400.0, help="--history-meta-ttl")
    parser.add_argument("--redis-server", default="redis-server", help="redis-server binary")
    parser.add_argument("--redis-benchmark", default="redis-benchmark", help="its benchmark")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print the figures."""
    args = _parser().parse_args(argv)
    if not 1 <= args.rounds <= MAX_ROUNDS or not 1 <= args.calls <= MAX_CALLS:
        raise SystemExit(f"measure: 1-{MAX_ROUNDS} rounds of 1-{MAX_CALLS:,} calls")
    if args.history_size < 1:
        raise SystemExit("measure: --history-size must be at least 1")
    tools = [shutil.which(args.redis_server), shutil.which(args.redis_benchmark)]
    if tools[0] is None or tools[1] is None:
        raise SystemExit("measure: needs redis-server and redis-benchmark (apt-get install redis)")
    server, benchmark = tools
    version = subprocess.run([server, "--version"], capture_output=True, text=True).stdout
    print(
        f"{version.split(' sha=')[0].strip()}; {args.rounds} rounds of {args.calls:,} calls, "
        f"{args.clients} clients pipelined {args.pipeline} deep, "
        f"history size {args.history_size}",
        flush=True,
    )
    report(measure(server, benchmark, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
