"""A worker's side of the ``recovery`` scenario: its clients join on the node
to be killed, follow their rooms, notice the kill, and rejoin elsewhere
with ``since`` (the exchange is in :mod:`broker.bench.messages`).

Started by :mod:`broker.bench.worker` when its first command is a
:class:`~broker.bench.messages.RecoverySetup`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable

import msgspec

from broker.bench.bounded import CONNECT_TIMEOUT, connect_all, own_cpu_seconds, run_bounded
from broker.bench.messages import (
    Await,
    Close,
    Command,
    Connect,
    Connected,
    Drop,
    Dropped,
    Loaded,
    Reached,
    Recover,
    Recovered,
    RecoverySetup,
    Report,
    RoomPosition,
)
from broker.bench.recovery_member import Rejoiner, Verdict

__all__ = ["DROP_TIMEOUT", "RecoveryWorker", "serve_recovery"]

DROP_TIMEOUT = 10.0
"""Seconds the clients get to notice that their node was killed."""

_decode_command = msgspec.json.Decoder(Command).decode


class RecoveryWorker:
    """The clients of one worker in a ``recovery`` run."""

    def __init__(self, setup: RecoverySetup) -> None:
        self.concurrency = setup.concurrency
        self.clients = [Rejoiner(spec.url, spec.room) for spec in setup.conns]

    async def connect(self) -> Connected:
        """Join every client on the node to be killed."""
        return await connect_all([(c.url, c.connect) for c in self.clients], self.concurrency)

    async def reach(self, positions: dict[str, RoomPosition]) -> Reached:
        """Wait until every client saw its room up to ``positions`` (bounded)."""
        waits = [c.wait_position(positions[c.room]) for c in self.clients if c.room in positions]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await asyncio.gather(*waits)
        behind = sum(
            1 for c in self.clients if c.room not in positions or not c.reached(positions[c.room])
        )
        return Reached(behind=behind)

    async def drop(self) -> Dropped:
        """Wait until every client's connection is closed (bounded)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DROP_TIMEOUT):
                await asyncio.gather(*(c.closed.wait() for c in self.clients))
        closed = sum(1 for c in self.clients if c.closed.is_set())
        return Dropped(closed=closed, still_open=len(self.clients) - closed)

    async def recover(self, command: Recover) -> Recovered:
        """Rejoin every client at ``command.url`` with ``since``; judge each."""
        cpu = own_cpu_seconds()
        verdicts = dict.fromkeys(Verdict, 0)
        last_ok_ns = 0

        def job(client: Rejoiner) -> Callable[[], Awaitable[int | None]]:
            async def rejoin() -> int | None:
                nonlocal last_ok_ns
                verdict = await client.rejoin(command.url, command.positions[client.room])
                verdicts[verdict] += 1
                if verdict is not Verdict.RECOVERED:
                    return None
                last_ok_ns = max(last_ok_ns, client.ok_ns)
                return client.ok_ns - command.kill_ns

            return rejoin

        batch = await run_bounded(
            [(command.url, job(c)) for c in self.clients], self.concurrency, CONNECT_TIMEOUT
        )
        return Recovered(
            recovered=verdicts[Verdict.RECOVERED],
            not_recovered=verdicts[Verdict.NOT_RECOVERED],
            wrong=verdicts[Verdict.WRONG],
            failed=batch.failed,
            replayed=sum(c.replayed_count for c in self.clients),
            errors=batch.errors,
            hist=batch.hist.to_sparse(),
            hist_total=batch.hist.total,
            hist_max=batch.hist.max,
            first_ns=batch.first_ns,
            last_ns=last_ok_ns,
            cpu_s=own_cpu_seconds() - cpu,
        )

    def close(self) -> None:
        """Close every client's connection."""
        for client in self.clients:
            client.close()


async def serve_recovery(
    setup: RecoverySetup, reader: asyncio.StreamReader, report: Callable[[Report], None]
) -> None:
    """Follow the coordinator's commands until ``Close`` or the end of stdin."""
    worker = RecoveryWorker(setup)
    report(Loaded(pid=os.getpid()))
    try:
        while line := await reader.readline():
            match _decode_command(line):
                case Connect():
                    report(await worker.connect())
                case Await(positions=positions):
                    report(await worker.reach(positions))
                case Drop():
                    report(await worker.drop())
                case Recover() as command:
                    report(await worker.recover(command))
                case Close():
                    break
                case other:
                    raise SystemExit(f"worker: {type(other).__name__} has no place in recovery")
    finally:
        worker.close()
        # Let the close frames reach the sockets before the process ends.
        await asyncio.sleep(0)
