"""The publisher connection: every command queued while the previous pipeline
was in flight goes out as one pipeline, so publishes are batched under load
and keep their order.

Invariants:
    * Commands reach Redis in the order they were queued, but for the
      scripts Redis had forgotten (NOSCRIPT: a SCRIPT FLUSH, a restart): those
      go again, in their order, right after the script is loaded, since
      Redis certainly did not run them.
    * Publishes are never retried otherwise: one that failed may have reached
      Redis, and a retry could deliver it twice. The one exception is the
      ``reroute`` hook of a cluster shard (:mod:`.cluster_router`): it is
      offered only commands that Redis provably did not run (a redirect,
      TRYAGAIN, CLUSTERDOWN, or a connection that could not be opened).
    * Every acceptance future is settled, at the latest by :meth:`fail_all`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import redis.asyncio as aioredis
from redis.exceptions import AskError, ClusterDownError, NoScriptError, TryAgainError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker.backends.base import BackendUnavailable, OutcomeUnknown
from broker.backends.redis.client import IO_ERRORS
from broker.backends.redis.errors import brief
from broker.backends.redis.scripts import Script

__all__ = ["NOT_RUN", "Batch", "Command", "Pipeline", "Publisher", "Reroute"]

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
    born: float = 0.0
    """When it was first queued (monotonic; set by a cluster router, which
    retries a redirected command only within its retry window)."""


Batch = list[Command]

NOT_RUN = (AskError, TryAgainError, ClusterDownError)
"""Error replies proving that Redis did not run the command (MOVED is an
``AskError`` too): a cluster may safely send it again elsewhere."""

Reroute = Callable[[Command, BaseException], bool]
"""Takes over a command Redis provably did not run; False: fail it as usual."""


class Pipeline(Protocol):
    """What presence and history writes need of a publisher: one ordered
    queue of commands (a :class:`Publisher`, or a cluster's router)."""

    def enqueue(
        self,
        args: tuple[bytes | int, ...],
        accepted: asyncio.Future[Any] | None,
        convert: Callable[[Any], Any] | None = None,
        script: Script | None = None,
    ) -> None:
        """Queue a command; ``accepted`` settles with its fate."""


class Publisher:
    """Pipelines commands on one client; :meth:`run` is its one task.

    Args:
        client: the publisher connection.
        reroute: offered every command Redis provably did not run (a
            cluster's redirects); None: such a command fails.
        wait_replicas: after each pipeline, ``WAIT`` for this many replicas
            (0: no WAIT); a publish is acknowledged only once they have it.
        wait_timeout: milliseconds that ``WAIT`` may take.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        reroute: Reroute | None = None,
        wait_replicas: int = 0,
        wait_timeout: int = 1000,
    ) -> None:
        self.client = client
        self._reroute = reroute
        self._wait = (b"WAIT", wait_replicas, wait_timeout) if wait_replicas > 0 else None
        self.wait_failures = 0
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
        self.enqueue_command(Command(args, accepted, convert, script))

    def enqueue_command(self, command: Command) -> None:
        """Queue ``command`` (see :meth:`enqueue`)."""
        if len(self._queue) >= MAX_QUEUED:
            self.failures += 1
            _fail(command.accepted, BackendUnavailable("too many publishes waiting"))
            return
        self._queue.append(command)
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
        if self._wait is not None:
            replies = self._waited(batch, replies)
        forgotten = [
            (command, reply)
            for command, reply in zip(batch, replies, strict=True)
            if isinstance(reply, NoScriptError) and command.script is not None
        ]
        if forgotten:
            await self._send_again([command for command, _ in forgotten])
        for command, reply in zip(batch, replies, strict=True):
            if not (isinstance(reply, NoScriptError) and command.script is not None):
                self.settle(command, reply)

    def _waited(self, batch: Batch, replies: list[Any]) -> list[Any]:
        # The last reply is WAIT's: how many replicas have every write above.
        waited = replies.pop()
        assert self._wait is not None
        if isinstance(waited, int) and waited >= int(self._wait[1]):
            return replies
        self.wait_failures += 1
        unknown = OutcomeUnknown(f"no replica confirmed the publish in time ({waited!r})")
        # Redis ran them, but a failover could lose them: not an ok.
        return [
            unknown if command.accepted is not None and not isinstance(reply, Exception) else reply
            for command, reply in zip(batch, replies, strict=True)
        ]

    async def _send_again(self, batch: Batch) -> None:
        # Redis ran none of them (NOSCRIPT): load the scripts and send them
        # again, in their order, in one pipeline behind the SCRIPT LOADs.
        scripts = {command.script.sha: command.script for command in batch if command.script}
        log.info("redis forgot %d script(s); loading them again", len(scripts))
        loads = tuple(scripts.values())
        replies = await self._execute(batch, loads)
        if replies is not None:
            replies = replies[len(loads) :]
            if self._wait is not None:
                replies = self._waited(batch, replies)
            for command, reply in zip(batch, replies, strict=True):
                self.settle(command, reply)

    async def _execute(self, batch: Batch, loads: Sequence[Script]) -> list[Any] | None:
        pipe = self.client.pipeline(transaction=False)
        for script in loads:
            pipe.execute_command(b"SCRIPT", b"LOAD", script.source)
        for command in batch:
            pipe.execute_command(*command.args)
        if self._wait is not None:
            pipe.execute_command(*self._wait)
        try:
            # Each command answers for itself: a refused HSET (OOM, READONLY)
            # must not fail the publishes beside it, which Redis did deliver.
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        except IO_ERRORS as exc:
            self.up = False
            unopened = self._reroute is not None and _never_connected(exc)
            # A cluster sends these again elsewhere: one line per failure
            # would repeat every retry.
            level = logging.DEBUG if unopened else logging.WARNING
            log.log(level, "redis pipeline of %d commands failed: %s", len(batch), brief(exc))
            self.failures += len(batch)
            error: Exception
            if _never_sent(exc):
                error = BackendUnavailable(f"Redis did not take the publish: {brief(exc)}")
            else:
                # Written, then no answer: Redis may run it when it recovers.
                error = OutcomeUnknown(f"Redis did not confirm the publish: {brief(exc)}")
            for command in batch:
                if not (unopened and self._reroute is not None and self._reroute(command, exc)):
                    _fail(command.accepted, error)
            return None
        self.up = True
        return replies

    def settle(self, command: Command, reply: Any) -> None:
        """Settle ``command``'s future with ``reply`` (a result or an error reply)."""
        reroute = self._reroute
        if isinstance(reply, NOT_RUN) and reroute is not None and reroute(command, reply):
            return
        if isinstance(reply, OutcomeUnknown):
            self.failures += 1
            _fail(command.accepted, reply)
            return
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


def _never_connected(exc: BaseException) -> bool:
    # redis-py says "Error 111 connecting to host:port" when the connection
    # could not be opened: then nothing of the pipeline was written.
    return "connecting to" in str(exc)


def _settle(batch: Batch, error: Exception) -> None:
    for command in batch:
        _fail(command.accepted, error)


def _fail(accepted: asyncio.Future[Any] | None, error: Exception) -> None:
    if accepted is not None and not accepted.done():
        accepted.set_exception(error)
