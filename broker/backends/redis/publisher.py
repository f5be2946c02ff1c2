"""The publisher connection: every command queued while the previous pipeline
was in flight goes out as one pipeline, so publishes are batched under load
and keep their order.

Invariants:
    * Commands reach Redis in the order they were queued.
    * Publishes are never retried: one that failed may have reached Redis,
      and a retry could deliver it twice.
    * Every acceptance future is settled, at the latest by :meth:`fail_all`.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker.backends.base import BackendUnavailable, OutcomeUnknown
from broker.backends.redis.client import IO_ERRORS
from broker.backends.redis.errors import brief

__all__ = ["Batch", "Publisher"]

log = logging.getLogger("broker.redis")

MAX_QUEUED = 100_000

Batch = list[tuple[tuple[bytes, ...], "asyncio.Future[None] | None"]]
"""Queued commands with their acceptance: PUBLISH has a future, membership
records have none."""


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

    def enqueue(self, command: tuple[bytes, ...], accepted: asyncio.Future[None] | None) -> None:
        """Queue ``command``; ``accepted`` (if any) settles with its fate.

        While Redis is stalled the queue grows with every say; past
        ``MAX_QUEUED`` a publish fails at once with BackendUnavailable.
        """
        if len(self._queue) >= MAX_QUEUED:
            self.failures += 1
            _settle([(command, accepted)], BackendUnavailable("too many publishes waiting"))
            return
        self._queue.append((command, accepted))
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
        pipe = self.client.pipeline(transaction=False)
        for command, _ in batch:
            pipe.execute_command(*command)
        try:
            # Each command answers for itself: a refused HSET (OOM, READONLY)
            # must not fail the PUBLISHes beside it, which Redis did deliver.
            replies = await pipe.execute(raise_on_error=False)
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
            _settle(batch, error)
            return
        self.up = True
        self.sent += len(batch)
        for (command, accepted), reply in zip(batch, replies, strict=True):
            if isinstance(reply, Exception):
                self.failures += 1
                log.warning("redis refused %s: %s", command[0].decode(), brief(reply))
                _settle([(command, accepted)], BackendUnavailable(f"Redis refused it: {reply}"))
            else:
                _settle([(command, accepted)], None)


def _never_sent(exc: BaseException) -> bool:
    # Refused, reset or closed: a Redis that dropped the connection does not
    # run a command it did not answer. A timeout after the command was written
    # is different: a stalled Redis (a long command, CLIENT PAUSE, a slow
    # disk) runs it when it wakes. redis-py raises the same TimeoutError for a
    # connect that timed out; only its message tells that one apart.
    timed_out = isinstance(exc, RedisTimeoutError | TimeoutError)
    return not timed_out or "connecting to" in str(exc)


def _settle(batch: Batch, error: Exception | None) -> None:
    for _, accepted in batch:
        if accepted is None or accepted.done():
            continue
        if error is None:
            accepted.set_result(None)
        else:
            accepted.set_exception(error)
