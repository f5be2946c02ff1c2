"""The coordinator's side of the worker processes: start them, send commands,
read their reports (see :mod:`broker.bench.messages` for the exchange)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Awaitable, Sequence
from functools import partial
from typing import Any, TypeVar

import msgspec

from broker.bench.messages import (
    Close,
    Command,
    Go,
    Loaded,
    Published,
    RecoverySetup,
    Report,
    Result,
    Setup,
    Stop,
)
from broker.bench.processes import Children

__all__ = ["WorkerFailed", "WorkerPool"]

_LINE_LIMIT = 64 << 20
_CLOSE_TIMEOUT = 5.0
_report_decoder: msgspec.json.Decoder[Report] = msgspec.json.Decoder(Report)
_encode = msgspec.json.Encoder().encode
R = TypeVar("R", bound=Report)
T = TypeVar("T")


class WorkerFailed(RuntimeError):
    """A worker exited or said something out of turn."""


async def _all_or_none(waits: Sequence[Awaitable[T]]) -> list[T]:
    """Await every one of ``waits``; if one fails, cancel the others first.

    Why not a bare ``gather``: it leaves the others reading their worker's
    stdout when one fails, and the pool's ``close`` then reads the same
    streams: "read() called while another coroutine is already waiting for
    incoming data" hid the first failure (a worker that died, a limit met).
    """
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Worker:
    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        reader: asyncio.StreamReader,
        transport: asyncio.ReadTransport,
    ) -> None:
        self.proc = proc
        self.reader = reader
        self.transport = transport

    def send(self, command: Command) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(_encode(command) + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise WorkerFailed(f"worker {self.proc.pid} is gone") from None

    async def report(self) -> Report:
        line = await self.reader.readline()
        if not line:
            raise WorkerFailed(f"worker {self.proc.pid} exited (status {self.proc.poll()})")
        return _report_decoder.decode(line)

    async def expect(self, kind: type[R]) -> R:
        report = await self.report()
        if not isinstance(report, kind):
            raise WorkerFailed(f"worker {self.proc.pid}: expected {kind.__name__}, got {report}")
        return report


class WorkerPool:
    """Worker processes, one per setup, each running :mod:`broker.bench.worker`."""

    def __init__(self, workers: list[_Worker], setups: Sequence[Setup | RecoverySetup]) -> None:
        self._workers = workers
        self._setups = setups
        self.pids = [w.proc.pid for w in workers]

    @classmethod
    async def start(cls, children: Children, setups: Sequence[Setup | RecoverySetup]) -> WorkerPool:
        """Start the workers, hand each its setup, wait until all are loaded."""
        loop = asyncio.get_running_loop()
        workers = []
        for index, setup in enumerate(setups):
            proc = children.start_python(f"worker{index}", "-m", "broker.bench.worker", pipes=True)
            assert proc.stdout is not None
            reader = asyncio.StreamReader(limit=_LINE_LIMIT)
            transport, _ = await loop.connect_read_pipe(
                partial(asyncio.StreamReaderProtocol, reader), proc.stdout
            )
            # The transport owns the pipe now and closes it: closing it again
            # later (Children.end_all) could close a reused descriptor.
            proc.stdout = None
            worker = _Worker(proc, reader, transport)
            worker.send(setup)
            workers.append(worker)
        pool = cls(workers, setups)
        await _all_or_none([w.expect(Loaded) for w in workers])
        return pool

    async def each(self, command: Command, kind: type[R]) -> list[R]:
        """Send ``command`` to every worker; return their reports of type ``kind``."""
        for worker in self._workers:
            worker.send(command)
        return await _all_or_none([w.expect(kind) for w in self._workers])

    async def run(self, start_ns: int, drain: float) -> list[Result]:
        """``Go``, then collect every worker's :class:`Result`.

        Once every publisher is done, members get ``drain`` more seconds to
        receive what is still in flight; then ``Stop`` makes the workers
        report what they have (what is missing then counts as missing).
        """
        has_publishers = [any(c.pub is not None for c in s.conns) for s in self._setups]
        waiting = {i for i, has in enumerate(has_publishers) if has}
        all_published = asyncio.Event()
        if not waiting:
            all_published.set()

        async def collect(index: int, worker: _Worker) -> Result:
            while True:
                report = await worker.report()
                if isinstance(report, Result):
                    return report
                if not isinstance(report, Published):
                    raise WorkerFailed(f"worker {worker.proc.pid}: unexpected {report}")
                waiting.discard(index)
                if not waiting:
                    all_published.set()

        for worker in self._workers:
            worker.send(Go(start_ns=start_ns))
        results = asyncio.ensure_future(
            _all_or_none([collect(i, w) for i, w in enumerate(self._workers)])
        )
        published = asyncio.ensure_future(all_published.wait())
        first: list[asyncio.Future[Any]] = [results, published]
        try:
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            if not results.done():
                done, _ = await asyncio.wait({results}, timeout=drain)
                if not done:
                    for worker in self._workers:
                        worker.send(Stop())
            return list(await results)
        finally:
            published.cancel()
            results.cancel()
            # Retrieve whatever they ended with (a worker's failure is raised above).
            await asyncio.gather(published, results, return_exceptions=True)

    async def close(self) -> None:
        """Tell every worker to close its connections and exit; wait until they have.

        A worker that does not exit in time is left to :meth:`Children.end_all`.
        """
        for worker in self._workers:
            with contextlib.suppress(WorkerFailed):
                worker.send(Close())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                # Each worker's stdout reaches EOF when the process exits.
                await asyncio.gather(*(w.reader.read() for w in self._workers))
        for worker in self._workers:
            worker.transport.close()
