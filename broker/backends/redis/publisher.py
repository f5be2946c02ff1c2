"""The publisher connection: every command queued while the previous pipeline
was in flight goes out as one pipeline, so publishes are batched under load
and keep their order.

Invariants:
    * Commands reach Redis in the order they were queued, but for the
      scripts Redis had forgotten (NOSCRIPT: a SCRIPT FLUSH, a restart): those
      go again, in their order, right after the script is loaded, since
      Redis certainly did not run them.
    * Publishes are never retried otherwise: one that failed may have reached
      Redis, and a retry could deliver it twice.
    * Every acceptance future is settled, at the latest by :meth:`fail_all`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker.backends.base import BackendUnavailable, OutcomeUnknown
from broker.backends.redis.client import IO_ERRORS
from broker.backends.redis.errors import brief
from broker.backends.redis.scripts import Script

__all__ = ["Batch", "Command", "Publisher"]

log = logging.getLogger("broker.redis")

MAX_QUEUED = 100_000


class Command(NamedTuple):
    """One queued command and what to do with its reply."""

    args: tuple[bytes | int, ...]
    accepted: asyncio.Future[Any] | None
    """Settled with the reply (through ``convert``) or the failure; None for
    a command nobody waits for."""
    convert: Callable[[Any], Any] | None = None
    """Turns the reply into the future's result (None: the result is None)."""
    script: Script | None = None
    """The script an EVALSHA calls, to load it again after NOSCRIPT."""


Batch = list[Command]


class Publisher:
    """Pipelines commands on one client; :meth:`run` is its one task.

    Args:
        client: the publisher connection.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._queue: Batch = []
        self._in_flight: Batch = []
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self.up = True
        self.sent = 0
        self.failures = 0

    def enqueue(
        self,
        args: tuple[bytes | int, ...],
        accepted: asyncio.Future[Any] | None,
        convert: Callable[[Any], Any] | None = None,
        script: Script | None = None,
    ) -> None:
        """Queue a command; ``accepted`` (if any) settles with its fate: its
        reply through ``convert``, or the failure. ``script``: the script an
        EVALSHA in ``args`` calls.

        While Redis is stalled the queue grows with every say; past
        ``MAX_QUEUED`` a publish fails at once with BackendUnavailable.
        """
        if len(self._queue) >= MAX_QUEUED:
            self.failures += 1
            _fail(accepted, BackendUnavailable("too many publishes waiting"))
            return
        self._queue.append(Command(args, accepted, convert, script))
        self._wakeup.set()

    async def run(self) -> None:
        """Send what is queued, one pipeline at a time, until cancelled."""
        while True:
            self._drained.set()
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._queue = self._queue, []
            if not batch:
                continue
            # Kept until settled, so that fail_all() can settle it if cancelled.
            self._in_flight = batch
            await self._send(batch)
            self._in_flight = []

    async def idle(self) -> None:
        """Wait until nothing is queued or in flight."""
        while self._queue or self._in_flight:
            await self._drained.wait()
            self._drained.clear()

    def fail_all(self, error: Exception) -> None:
        """Fail every queued or in-flight publish (after :meth:`run` stopped)."""
        batch = self._queue + self._in_flight
        self._queue, self._in_flight = [], []
        _settle(batch, error)

    async def _send(self, batch: Batch) -> None:
        replies = await self._execute(batch, ())
        if replies is None:
            return
        forgotten = [
            (command, reply)
            for command, reply in zip(batch, replies, strict=True)
            if isinstance(reply, NoScriptError) and command.script is not None
        ]
        if forgotten:
            await self._send_again([command for command, _ in forgotten])
        for command, reply in zip(batch, replies, strict=True):
            if not (isinstance(reply, NoScriptError) and command.script is not None):
                self._settle_reply(command, reply)

    async def _send_again(self, batch: Batch) -> None:
        # Redis ran none of them (NOSCRIPT): load the scripts and send them
        # again, in their order, in one pipeline behind the SCRIPT LOADs.
        scripts = {command.script.sha: command.script for command in batch if command.script}
        log.info("redis forgot %d script(s); loading them again", len(scripts))
        loads = tuple(scripts.values())
        replies = await self._execute(batch, loads)
        if replies is not None:
            for command, reply in zip(batch, replies[len(loads) :], strict=True):
                self._settle_reply(command, reply)

    async def _execute(self, batch: Batch, loads: Sequence[Script]) -> list[Any] | None:
        pipe = self.client.pipeline(transaction=False)
        for script in loads:
            pipe.execute_command(b"SCRIPT", b"LOAD", script.source)
        for command in batch:
            pipe.execute_command(*command.args)
        try:
            # Each command answers for itself: a refused HSET (OOM, READONLY)
            # must not fail the publishes beside it, which Redis did deliver.
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        except IO_ERRORS as exc:
            self.up = False
            self.failures += len(batch)
            log.warning("redis pipeline of %d commands failed: %s", len(batch), brief(exc))
            error: Exception
            if _never_sent(exc):
                error = BackendUnavailable(f"Redis did not take the publish: {brief(exc)}")
            else:
                # Written, then no answer: Redis may run it when it recovers.
                error = OutcomeUnknown(f"Redis did not confirm the publish: {brief(exc)}")
            for command in batch:
                _fail(command.accepted, error)
            return None
        self.up = True
        return replies

    def _settle_reply(self, command: Command, reply: Any) -> None:
        if isinstance(reply, Exception):
            self.failures += 1
            log.warning("redis refused %s: %s", _name(command), brief(reply))
            _fail(command.accepted, BackendUnavailable(f"Redis refused it: {reply}"))
            return
        self.sent += 1
        accepted = command.accepted
        if accepted is not None and not accepted.done():
            convert = command.convert
            accepted.set_result(None if convert is None else convert(reply))


def _name(command: Command) -> str:
    first = command.args[0]
    return first.decode() if isinstance(first, bytes) else str(first)


def _never_sent(exc: BaseException) -> bool:
    # Refused, reset or closed: a Redis that dropped the connection does not
    # run a command it did not answer. A timeout after the command was written
    # is different: a stalled Redis (a long command, CLIENT PAUSE, a slow
    # disk) runs it when it wakes. redis-py raises the same TimeoutError for a
    # connect that timed out; only its message tells that one apart.
    timed_out = isinstance(exc, RedisTimeoutError | TimeoutError)
    return not timed_out or "connecting to" in str(exc)


def _settle(batch: Batch, error: Exception) -> None:
    for command in batch:
        _fail(command.accepted, error)


def _fail(accepted: asyncio.Future[Any] | None, error: Exception) -> None:
    if accepted is not None and not accepted.done():
        accepted.set_exception(error)
