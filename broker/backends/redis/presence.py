"""Crash recovery: no ghosts when a node dies.

Each node keeps a heartbeat key ``{ns}:alive:{node}`` (expiring after
``ttl``), its name in the set ``{ns}:nodes``, and a hash
``{ns}:members:{node}`` of its sessions' memberships, written through the
publisher pipeline in order with the node's announcements. Every node looks
for names in the set whose heartbeat expired; the one that wins
``SET {ns}:reaped:{node} NX`` (a tombstone kept for ``TOMBSTONE_MS``) reads
the dead node's memberships and hands them to its own node, which announces
their ``left``. A node that was only frozen or cut off finds its name gone
from the set and its tombstone there at its next heartbeat: it records its
memberships again and has their ``joined`` announced again. A node whose name
is gone without a tombstone saw Redis lose its data (a restart): it records
its memberships again and announces nothing, since nobody was told anything.

Rooms' presence (:mod:`.room_presence`) follows the same lives: the
heartbeat refreshes the presence of every room the node has members in (and
writes back what failed while Redis was away); whoever reaps a node, or a
node restarting with the id of its crashed run, removes those sessions from
presence before their ``left`` is announced; a revived node, or one whose
Redis lost its data, writes its sessions again (before re-announcing their
``joined``). Without hooks (a backend of tests, or of a lone process) the
node heartbeats and cleans up its own previous run, but reaps nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis

from broker.backends.base import Membership, PresenceHooks
from broker.backends.redis.client import IO_ERRORS, as_bytes
from broker.backends.redis.errors import brief
from broker.backends.redis.publisher import Pipeline
from broker.backends.redis.room_presence import RoomPresence, settled

__all__ = ["Presence"]

log = logging.getLogger("broker.redis")

TOMBSTONE_MS = 24 * 3600 * 1000


class Presence:
    """One node's heartbeat, membership record, and watch over the others.

    Args:
        client: the publisher connection (for direct commands).
        publisher: the pipeline that records memberships in order.
        node: this node's id.
        namespace: prefix of every key.
        ttl: seconds without a heartbeat before a node counts as dead.
        hooks: the node's callbacks (None: reap nobody, tell nobody).
        rooms: this node's sessions in rooms' presence.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        publisher: Pipeline,
        node: bytes,
        namespace: str,
        ttl: float,
        hooks: PresenceHooks | None,
        rooms: RoomPresence,
    ) -> None:
        self._client = client
        self._publisher = publisher
        self._node = node
        self._ttl = ttl
        self._hooks = hooks
        self._rooms = rooms
        self._nodes_key = f"{namespace}:nodes".encode()
        self._alive_prefix = f"{namespace}:alive:".encode()
        self._members_key = f"{namespace}:members:".encode() + node
        self._members_prefix = f"{namespace}:members:".encode()
        self._reaped_prefix = f"{namespace}:reaped:".encode()
        self._registered = False
        self._dirty = False
        self.reaped_nodes = 0

    def track(self, membership: Membership, member: bool) -> None:
        """Record a membership's start or end, in the room's presence and in
        this node's membership hash, in order with its announcement."""
        if not self._rooms.track(membership, member):
            return
        field = f"{membership.room}\n{membership.session}".encode()
        if member:
            self._record((b"HSET", self._members_key, field, (membership.user or "").encode()))
        else:
            self._record((b"HDEL", self._members_key, field))

    def _record(self, command: tuple[bytes, ...]) -> None:
        recorded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        recorded.add_done_callback(self._recorded)
        self._publisher.enqueue(command, recorded)

    def _recorded(self, recorded: asyncio.Future[None]) -> None:
        # A lost record would make a later crash announce the wrong sessions:
        # the next heartbeat writes the whole hash again.
        if recorded.cancelled() or recorded.exception() is not None:
            self._dirty = True

    async def recover_previous_run(self) -> None:
        """Announce ``left`` for what a crashed earlier run of this node id left."""
        # A tombstone of an earlier run would stop the others reaping this one.
        await self._client.delete(self._reaped_prefix + self._node)
        records = await self._client.hgetall(self._members_key)
        if records:
            memberships = _memberships(records)
            # Gone from presence before their left is announced ("Presence").
            await self._rooms.remove(self._node, memberships)
            await self._client.delete(self._members_key)
            log.warning("announcing left for %d members of this node's last run", len(records))
            if self._hooks is not None:
                self._hooks.lost(memberships)

    async def run(self) -> None:
        """Heartbeat and look for dead nodes, until cancelled."""
        period = max(0.5, self._ttl / 5)
        while True:
            try:
                await self._heartbeat()
                if self._hooks is not None:
                    await self._reap()
            except IO_ERRORS as exc:
                log.debug("presence round skipped: %s", brief(exc))
            except Exception:
                # The heartbeat must outlive anything unforeseen: without it
                # the other nodes reap this one's live sessions.
                log.exception("presence round failed")
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # Cancelled inside a Redis call that turned the cancellation
                # into a connection error: stop all the same.
                raise asyncio.CancelledError
            await asyncio.sleep(period)

    async def withdraw(self) -> None:
        """A clean stop: leave nothing for the others to reap."""
        with contextlib.suppress(*IO_ERRORS):
            await self._rooms.withdraw()
        with contextlib.suppress(*IO_ERRORS):
            pipe = self._client.pipeline(transaction=False)
            pipe.srem(self._nodes_key, self._node)
            pipe.delete(self._alive_prefix + self._node, self._members_key)
            await pipe.execute()

    async def _heartbeat(self) -> None:
        pipe = self._client.pipeline(transaction=False)
        pipe.set(self._alive_prefix + self._node, b"1", px=int(self._ttl * 1000))
        pipe.sadd(self._nodes_key, self._node)
        _, added = await pipe.execute()
        if added and self._registered:
            await self._register_again()
        elif self._dirty:
            await self._rewrite_members()
        self._registered = True
        # One call per room, not per session; what failed waits for the next beat.
        await settled(self._rooms.refresh() + self._rooms.write_back())

    async def _rewrite_members(self) -> None:
        self._dirty = False
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(self._members_key)
        records: dict[Any, Any] = self._rooms.records()
        if records:
            pipe.hset(self._members_key, mapping=records)
        try:
            await pipe.execute()
        except BaseException:
            self._dirty = True
            raise

    async def _register_again(self) -> None:
        # Our name was gone: reaped (tombstone) or lost with Redis's data.
        pipe = self._client.pipeline(transaction=False)
        pipe.delete(self._reaped_prefix + self._node)
        records: dict[Any, Any] = self._rooms.records()
        if records:
            pipe.hset(self._members_key, mapping=records)
        reaped, *_ = await pipe.execute()
        # In presence again before the joined are announced again ("Presence");
        # a write that failed is written back by a later heartbeat.
        await settled(self._rooms.rebuild())
        if reaped and records and self._hooks is not None:
            log.warning("this node was taken for dead; re-announcing %d members", len(records))
            self._hooks.revived(_memberships(records))

    async def _reap(self) -> None:
        names = await self._client.smembers(self._nodes_key)
        others = [as_bytes(name) for name in names if as_bytes(name) != self._node]
        if not others:
            return
        pipe = self._client.pipeline(transaction=False)
        for node in others:
            pipe.exists(self._alive_prefix + node)
        alive = await pipe.execute()
        for node, is_alive in zip(others, alive, strict=True):
            if not is_alive:
                await self._reap_one(node)

    async def _reap_one(self, node: bytes) -> None:
        won = await self._client.set(
            self._reaped_prefix + node, self._node, nx=True, px=TOMBSTONE_MS
        )
        if not won:
            return  # another node reaps it
        records = await self._client.hgetall(self._members_prefix + node)
        memberships = _memberships(records)
        try:
            # Gone from presence before their left is announced ("Presence").
            await self._rooms.remove(node, memberships)
        except BaseException:
            # Let a later round (this node's or another's) reap it again.
            with contextlib.suppress(*IO_ERRORS):
                await self._client.delete(self._reaped_prefix + node)
            raise
        log.warning(
            "node %s is gone; announcing left for its %d members", node.decode(), len(records)
        )
        assert self._hooks is not None  # only a node with hooks reaps
        self._hooks.lost(memberships)
        pipe = self._client.pipeline(transaction=False)
        pipe.delete(self._members_prefix + node)
        pipe.srem(self._nodes_key, node)
        await pipe.execute()
        self.reaped_nodes += 1


def _memberships(records: Mapping[Any, Any]) -> list[Membership]:
    memberships = []
    for field, user in records.items():
        room, _, session = as_bytes(field).decode().partition("\n")
        memberships.append(Membership(room, session, as_bytes(user).decode() or None))
    return memberships
