"""Routes every queued command of a cluster node to the pipeline of the shard
that owns its key's slot, and sends again what Redis provably did not run.

Redis answers ``MOVED`` (the slot has another master now), ``ASK`` (the slot
is migrating and this key is already on the target), ``TRYAGAIN`` (a
multi-key command meets a slot half migrated) or ``CLUSTERDOWN`` (a
failover in progress) without running the command, and a connection that
could not be opened carried nothing: such a command is sent again, to the
master the reply names or that the next topology names, until its retry
window (``window`` seconds from when it was first queued) is over; then it
fails with :class:`~broker.backends.base.BackendUnavailable` (nothing was
published). A command that may have run (a timeout, a connection lost after
writing) is never sent again: it fails as on one Redis
(:class:`~broker.backends.base.OutcomeUnknown`).

Invariants:
    * Every command handed to :meth:`Router.enqueue` is settled: by its
      shard's pipeline, or failed here when its window is over or the router
      closes.
    * Commands of one slot keep their order: while some wait to be sent
      again, every later one of that slot waits behind them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import Any

from redis.exceptions import MovedError

from broker.backends.base import BackendUnavailable
from broker.backends.redis.cluster_shard import Shard
from broker.backends.redis.cluster_topology import slot_of
from broker.backends.redis.publisher import Command
from broker.backends.redis.scripts import Script

__all__ = ["Router", "routing_key"]

RETRY_DELAY = 0.02
"""Seconds before a slot's held commands are sent again."""


def routing_key(args: tuple[bytes | int, ...]) -> bytes:
    """The key whose slot a command goes to: a script's first key, or the
    first argument (a channel, or a key)."""
    name = args[0]
    index = 3 if name in (b"EVALSHA", b"EVAL") else 1
    key = args[index]
    return key if isinstance(key, bytes) else str(key).encode()


class Router:
    """The node's one queue of commands, split over its shards' pipelines.

    Args:
        owner: the shard that serves a slot now (None: no master known).
        at: the shard of a master's address (``host:port``), if known.
        stale: asks for a new look at the topology.
        window: seconds a command may be sent again after its first try.
    """

    def __init__(
        self,
        owner: Callable[[int], Shard | None],
        at: Callable[[str], Shard | None],
        stale: Callable[[], None],
        window: float,
    ) -> None:
        self._owner = owner
        self._at = at
        self._stale = stale
        self._window = window
        self._held: dict[int, deque[Command]] = {}
        """Commands of a slot waiting to be sent again, in their order; a
        later command of that slot waits behind them."""
        self._moved: dict[int, str] = {}
        """Slots a MOVED reply named a new master of, before the topology did."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.redirects = 0
        self.closed = False

    def enqueue(
        self,
        args: tuple[bytes | int, ...],
        accepted: asyncio.Future[Any] | None,
        convert: Callable[[Any], Any] | None = None,
        script: Script | None = None,
    ) -> None:
        """Queue a command on the pipeline of its slot's shard."""
        self._send(Command(args, accepted, convert, script, monotonic()))

    def topology_changed(self) -> None:
        """The node installed a new topology: it knows every move since."""
        self._moved.clear()

    def _send(self, command: Command) -> None:
        if self.closed:
            _fail(command, BackendUnavailable("backend closed"))
            return
        slot = slot_of(routing_key(command.args))
        held = self._held.get(slot)
        if held is not None:
            held.append(command)
            return
        shard = self._route(slot)
        if shard is None:
            self._stale()
            self._hold(slot, command, RETRY_DELAY)
            return
        shard.publisher.enqueue_command(command)

    def _route(self, slot: int) -> Shard | None:
        moved = self._moved.get(slot)
        shard = self._at(moved) if moved is not None else None
        return shard if shard is not None else self._owner(slot)

    def reroute(self, command: Command, error: BaseException) -> bool:
        """A shard's pipeline hands over a command Redis did not run; False
        when its window is over (the pipeline then fails it)."""
        if self.closed or monotonic() - command.born > self._window:
            return False
        self.redirects += 1
        slot = slot_of(routing_key(command.args))
        self._stale()
        delay = RETRY_DELAY
        if isinstance(error, MovedError):
            address = f"{error.host}:{error.port}"
            self._moved[slot] = address
            # At once only to a master this node has a shard for already:
            # else the old one would answer MOVED again, in a tight loop,
            # until the new topology is installed.
            delay = 0.0 if self._at(address) is not None else RETRY_DELAY
        # ASK (the slot migrates), TRYAGAIN, CLUSTERDOWN, or a master that
        # could not be reached: the same command later, in order with the
        # slot's others. (An ASK is not followed to the importing master:
        # the publish script names the room's channel as a key, which no
        # master holds, so the importing one answers TRYAGAIN until the slot
        # has moved; then MOVED names it.)
        self._hold(slot, command, delay)
        return True

    def _hold(self, slot: int, command: Command, delay: float) -> None:
        held = self._held.get(slot)
        if held is None:
            held = self._held[slot] = deque()
            task = asyncio.get_running_loop().create_task(self._release(slot, delay))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        held.append(command)

    async def _release(self, slot: int, delay: float) -> None:
        await asyncio.sleep(delay)
        held = self._held.pop(slot, deque())
        now = monotonic()
        for command in held:
            if now - command.born > self._window:
                _fail(command, BackendUnavailable("the Redis Cluster did not take it in time"))
            else:
                self._send(command)

    async def close(self) -> None:
        """Fail what waits to be sent again; later commands fail at once."""
        self.closed = True
        for task in tuple(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        for held in self._held.values():
            for command in held:
                _fail(command, BackendUnavailable("backend closed"))
        self._held.clear()


def _fail(command: Command, error: Exception) -> None:
    accepted = command.accepted
    if accepted is not None and not accepted.done():
        accepted.set_exception(error)
