"""A load-generator worker process: ``python -m broker.bench.worker``.

It owns a share of the benchmark's connections and follows the coordinator's
commands (see :mod:`broker.bench.messages`): one JSON command per line on
stdin, one JSON report per line on stdout. It exits when told to, or when
its stdin closes (the coordinator is gone), so it never outlives a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import sys
import time

import msgspec

from broker.bench.bounded import (
    CONNECT_TIMEOUT,
    Job,
    connect_all,
    not_connected,
    own_cpu_seconds,
)
from broker.bench.limits import fd_shortfall, limit_of
from broker.bench.member import Member, Tally
from broker.bench.messages import (
    Await,
    Close,
    Command,
    Connect,
    Connected,
    Drop,
    Go,
    Loaded,
    Published,
    Recover,
    RecoverySetup,
    Report,
    Result,
    Setup,
    Stop,
    Warm,
    Warmed,
)
from broker.bench.publisher import Publisher
from broker.bench.recovery_worker import serve_recovery

__all__ = ["CoordinatorGone", "main", "raise_open_file_limit"]

_LINE_LIMIT = 64 << 20
_decode_command = msgspec.json.Decoder(Command).decode
_encode = msgspec.json.Encoder().encode


def raise_open_file_limit() -> None:
    """Allow as many sockets as the hard limit does (thousands of connections)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class CoordinatorGone(Exception):
    """Our stdout is closed: nobody reads the reports any more."""


def _report(report: Report) -> None:
    try:
        sys.stdout.buffer.write(_encode(report) + b"\n")
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise CoordinatorGone from None


class Worker:
    """The connections of one worker and the phases of a run."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        heard = [
            [p for p in setup.publishers.get(spec.room, []) if p != spec.pub]
            for spec in setup.conns
        ]
        self.tally = Tally(
            expected=sum(len(h) for h in heard) * setup.messages,
            warm_expected=sum(len(h) for h in heard),
        )
        self.members = [
            Member(spec.url, spec.room, pubs, setup.messages, self.tally, spec.source)
            for spec, pubs in zip(setup.conns, heard, strict=True)
        ]
        members = self.members
        self.publishers = [
            Publisher(
                member,
                spec.pub,
                setup.messages,
                setup.window,
                setup.rate,
                spec.phase,
                setup.body_size,
            )
            for member, spec in zip(members, setup.conns, strict=True)
            if spec.pub is not None
        ]
        self.stop = asyncio.Event()
        self.result_sent = False
        self._go_cpu = 0.0
        self._go_wall = 0

    async def connect(self) -> Connected:
        """Open and join every connection, ``concurrency`` handshakes at a time
        and at most ``connect_rate`` a second; stop at the first limit met."""
        shortfall = fd_shortfall(len(self.members))
        if shortfall is not None:
            return not_connected(len(self.members), shortfall)
        jobs: list[Job] = [
            (m.url if m.source is None else f"{m.url} from {m.source}", m.connect)
            for m in self.members
        ]
        return await connect_all(jobs, self.setup.concurrency, self.setup.connect_rate, limit_of)

    async def warm(self) -> Warmed:
        """Say the warm-up messages; wait until every member heard every one.

        Why: joining S members sends O(S²) ``joined`` events; the warm-up is
        queued behind them, so once it arrives the measured window starts
        with quiet sockets.
        """
        for publisher in self.publishers:
            publisher.say_warm_up()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await self.tally.warmed.wait()
        return Warmed(missing=self.tally.warm_pending)

    async def go(self, start_ns: int) -> None:
        """Publish, then report; the report comes early if ``Stop`` arrives."""
        # Busy time is measured from the common start: before it, the worker idles.
        self._go_cpu = own_cpu_seconds()
        self._go_wall = max(start_ns, time.monotonic_ns())
        if self.publishers:
            await asyncio.gather(*(p.run(start_ns) for p in self.publishers))
            _report(Published())
        await self.tally.done.wait()
        self.send_result()

    def send_result(self) -> None:
        """Report what arrived so far, once."""
        if self.result_sent:
            return
        self.result_sent = True
        tally = self.tally
        errors = dict(tally.errors)
        for publisher in self.publishers:
            for code, n in publisher.errors.items():
                errors[code] = errors.get(code, 0) + n
        pubs = self.publishers
        _report(
            Result(
                expected=tally.expected,
                delivered=tally.delivered_count,
                missing=tally.expected - tally.delivered_count,
                duplicates=tally.duplicates,
                out_of_order=tally.out_of_order,
                unexpected=tally.unexpected,
                offset_gaps=sum(m.offsets.gap_count() for m in self.members),
                offset_backwards=sum(m.offsets.backwards for m in self.members),
                epoch_changes=sum(m.offsets.epoch_changes for m in self.members),
                joins_with_position=tally.joins_with_position,
                closed=tally.closed,
                hist=tally.hist.to_sparse(),
                hist_total=tally.hist.total,
                hist_max=tally.hist.max,
                first_recv_ns=tally.first_recv_ns,
                last_recv_ns=tally.last_recv_ns,
                says=sum(p.says for p in pubs),
                acks=sum(p.acks for p in pubs),
                errors=errors,
                first_send_ns=min((p.first_send_ns for p in pubs if p.first_send_ns), default=0),
                last_send_ns=max((p.last_send_ns for p in pubs), default=0),
                last_ack_ns=max((p.last_ack_ns for p in pubs), default=0),
                max_lag_ms=max((p.max_lag_ns for p in pubs), default=0) / 1e6,
                cpu_s=own_cpu_seconds() - self._go_cpu,
                wall_s=(time.monotonic_ns() - self._go_wall) / 1e9,
            )
        )

    def close(self) -> None:
        """Close every connection."""
        for member in self.members:
            member.close()


async def _serve(reader: asyncio.StreamReader) -> None:
    line = await reader.readline()
    if not line:
        return
    setup = _decode_command(line)
    if isinstance(setup, RecoverySetup):
        await serve_recovery(setup, reader, _report)
        return
    if not isinstance(setup, Setup):
        raise SystemExit(f"worker: expected setup, got {setup!r}")
    worker = Worker(setup)
    _report(Loaded(pid=os.getpid()))
    running: asyncio.Task[None] | None = None
    try:
        while line := await reader.readline():
            match _decode_command(line):
                case Connect():
                    _report(await worker.connect())
                case Warm():
                    _report(await worker.warm())
                case Go(start_ns=start_ns):
                    running = asyncio.create_task(worker.go(start_ns))
                case Stop():
                    worker.send_result()
                case Close():
                    break
                case Setup() | RecoverySetup():
                    raise SystemExit("worker: setup sent twice")
                case Await() | Drop() | Recover():
                    raise SystemExit("worker: a recovery command outside a recovery run")
    finally:
        if running is not None:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        worker.close()
        # Let the close frames reach the sockets before the process ends.
        await asyncio.sleep(0)


async def _main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await _serve(reader)


def main() -> int:
    """Run one worker until its coordinator says ``close`` or goes away."""
    from broker.runtime import run_async

    raise_open_file_limit()
    try:
        run_async(_main())
    except CoordinatorGone:
        # Python's docs on SIGPIPE: point stdout at devnull so that the
        # flush at exit does not fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
