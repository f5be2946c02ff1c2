"""Rooms' presence in Redis as one node writes and reads it
(docs/HISTORY-PRESENCE.md, "Presence"; the contract of
:meth:`~broker.backends.base.Backend.track` and
:meth:`~broker.backends.base.Backend.presence`). The scripts and the key
layout are in :mod:`.presence_scripts`.

Invariants:
    * ``_local`` holds exactly this node's live memberships (room -> session
      -> user, ``""`` when anonymous), and every change of it is queued on
      the publisher when it happens: presence shows a change before any
      publish the node queues afterwards (its ``joined`` or ``left``).
    * Every write of this node's own sessions goes through the publisher, in
      order with the others; only reads, and removals of sessions of a dead
      node or of this node's previous run, go directly.
    * A write that failed (refused, or Redis away) leaves its sessions in
      ``_unsure`` until :meth:`RoomPresence.write_back` wrote their current
      state (the scripts are idempotent, so a write that did reach Redis
      does no harm written again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from broker.backends.base import BackendUnavailable, Membership, PresenceRead
from broker.backends.redis.client import IO_ERRORS, as_bytes
from broker.backends.redis.envelope import PresenceKeys
from broker.backends.redis.errors import brief
from broker.backends.redis.presence_scripts import ADD, READ, REFRESH, REMOVE
from broker.backends.redis.publisher import Pipeline
from broker.backends.redis.scripts import Script

__all__ = ["CHUNK", "RoomPresence", "settled"]

log = logging.getLogger("broker.redis")

CHUNK = 500
"""Most sessions one script call adds or removes (bounds how long it runs)."""

_Future = asyncio.Future[Any]


class RoomPresence:
    """This node's sessions in rooms' presence, and reads of any room's.

    Args:
        client: the publisher connection (direct calls).
        publisher: the pipeline that writes in order with publishes.
        node: this node's id.
        namespace: prefix of every key.
        ttl: seconds a room's presence lives without a write or a refresh.
    """

    def __init__(
        self, client: aioredis.Redis, publisher: Pipeline, node: bytes, namespace: str, ttl: float
    ) -> None:
        self._client = client
        self._publisher = publisher
        self._node = node
        self._namespace = namespace
        self._ttl_ms = max(1, int(ttl * 1000))
        self._local: dict[str, dict[str, str]] = {}
        self._unsure: dict[str, set[str]] = {}
        self.rewritten_rooms = 0

    # --- this node's sessions (through the publisher) -------------------------

    def track(self, membership: Membership, member: bool) -> bool:
        """Queue the write of a membership's start or end.

        Returns:
            Whether anything changed (a session added twice, or removed
            when it is not there, changes nothing).
        """
        room, session, user = membership
        sessions = self._local.get(room)
        if member:
            name = user or ""
            if sessions is None:
                sessions = self._local[room] = {}
            elif sessions.get(session) == name:
                return False
            sessions[session] = name
            self._add(room, ((session, name),))
            return True
        if sessions is None or sessions.pop(session, None) is None:
            return False
        if not sessions:
            del self._local[room]
        self._remove(room, (session,))
        return True

    def memberships(self) -> list[Membership]:
        """This node's live memberships."""
        return [
            Membership(room, session, user or None)
            for room, sessions in self._local.items()
            for session, user in sessions.items()
        ]

    def records(self) -> dict[bytes, bytes]:
        """This node's memberships as fields of its membership hash
        (``room\\nsession`` -> user)."""
        return {
            f"{room}\n{session}".encode(): user.encode()
            for room, sessions in self._local.items()
            for session, user in sessions.items()
        }

    def refresh(self) -> list[_Future]:
        """The heartbeat: push back the expiry of every room this node has
        members in, one call per room; a room that holds fewer of this node's
        sessions than it has (it expired, or was lost) gets them again."""
        futures = []
        for room, sessions in self._local.items():
            refreshed: _Future = asyncio.get_running_loop().create_future()
            refreshed.add_done_callback(partial(self._refreshed, room, len(sessions)))
            keys = PresenceKeys.of(self._namespace, room)
            args = (b"EVALSHA", REFRESH.sha, 3, *keys, self._node, self._ttl_ms)
            self._publisher.enqueue(args, refreshed, int, REFRESH)
            futures.append(refreshed)
        return futures

    def rebuild(self) -> list[_Future]:
        """Write every session of this node again (Redis lost them, or the
        cluster took this node for dead and removed them)."""
        futures = []
        for room, sessions in self._local.items():
            futures += self._add(room, tuple(sessions.items()))
        return futures

    def write_back(self) -> list[_Future]:
        """Write the current state of every session whose last write failed."""
        unsure, self._unsure = self._unsure, {}
        futures = []
        for room, sessions in unsure.items():
            local = self._local.get(room, {})
            gone = tuple(session for session in sessions if session not in local)
            here = tuple((session, local[session]) for session in sessions if session in local)
            if gone:
                futures += self._remove(room, gone)
            if here:
                futures += self._add(room, here)
        return futures

    def _add(self, room: str, pairs: Sequence[tuple[str, str]]) -> list[_Future]:
        futures = []
        for start in range(0, len(pairs), CHUNK):
            chunk = pairs[start : start + CHUNK]
            words = [word.encode() for pair in chunk for word in pair]
            sessions = tuple(session for session, _ in chunk)
            futures.append(self._write(room, ADD, (self._ttl_ms, *words), sessions))
        return futures

    def _remove(self, room: str, sessions: Sequence[str]) -> list[_Future]:
        futures = []
        for start in range(0, len(sessions), CHUNK):
            chunk = tuple(sessions[start : start + CHUNK])
            words = [session.encode() for session in chunk]
            futures.append(self._write(room, REMOVE, tuple(words), chunk))
        return futures

    def _write(
        self, room: str, script: Script, words: tuple[bytes | int, ...], sessions: tuple[str, ...]
    ) -> _Future:
        written: _Future = asyncio.get_running_loop().create_future()
        written.add_done_callback(partial(self._written, room, sessions))
        keys = PresenceKeys.of(self._namespace, room)
        args = (b"EVALSHA", script.sha, 3, *keys, self._node, *words)
        self._publisher.enqueue(args, written, None, script)
        return written

    def _written(self, room: str, sessions: tuple[str, ...], written: _Future) -> None:
        # Retrieving the exception also keeps asyncio from logging it.
        if written.cancelled() or written.exception() is not None:
            self._unsure.setdefault(room, set()).update(sessions)

    def _refreshed(self, room: str, count: int, refreshed: _Future) -> None:
        if refreshed.cancelled() or refreshed.exception() is not None:
            return  # the next heartbeat tries again
        stored: int = refreshed.result()
        sessions = self._local.get(room)
        if stored < count and sessions:
            # The room expired or Redis lost it while this node lives (a
            # heartbeat late past the TTL, an eviction): write it again.
            log.info("presence of room %r held %d of %d sessions: rewriting", room, stored, count)
            self.rewritten_rooms += 1
            self._add(room, tuple(sessions.items()))

    # --- direct calls -------------------------------------------------------

    async def remove(self, node: bytes, memberships: Iterable[Membership]) -> None:
        """Remove ``node``'s ``memberships`` (a dead node's, or this node's
        previous run's) from presence, in one pipeline.

        Raises:
            RedisError, OSError, TimeoutError: Redis refused or is unreachable.
        """
        rooms: dict[str, list[str]] = {}
        for room, session, _user in memberships:
            rooms.setdefault(room, []).append(session)
        if not rooms:
            return
        # Loaded first: a Redis that restarted knows no script (on a cluster,
        # SCRIPT LOAD goes to every master).
        await self._client.script_load(REMOVE.source)
        pipe = self._client.pipeline(transaction=False)
        for room, sessions in rooms.items():
            keys = PresenceKeys.of(self._namespace, room)
            for start in range(0, len(sessions), CHUNK):
                words = [session.encode() for session in sessions[start : start + CHUNK]]
                # A str command name: redis-py's cluster pipeline takes no bytes.
                pipe.execute_command("EVALSHA", REMOVE.sha, 3, *keys, node, *words)
        await pipe.execute()

    async def withdraw(self) -> None:
        """A clean stop: remove every session of this node whose record may
        be in Redis (after the publisher stopped).

        Raises:
            RedisError, OSError, TimeoutError: Redis refused or is unreachable.
        """
        # The publisher's last failures mark sessions unsure in callbacks that
        # run on the next loop iteration: let them run first.
        await asyncio.sleep(0)
        mine = self.memberships()
        mine += [
            Membership(room, session, None)
            for room, sessions in self._unsure.items()
            for session in sessions
            if session not in self._local.get(room, {})
        ]
        await self.remove(self._node, mine)

    async def read(self, room: str, limit: int) -> PresenceRead:
        """See :meth:`~broker.backends.base.Backend.presence`; this node's own
        unsure writes are written first, so that it reads its own changes.

        Raises:
            BackendUnavailable: Redis refused or is unreachable.
        """
        if self._unsure and not await settled(self.write_back()):
            raise BackendUnavailable("room presence could not be written")
        keys = PresenceKeys.of(self._namespace, room)
        # redis-py types the SHA and the arguments as str: bytes go as they are.
        sha: Any = READ.sha
        words: Any = (keys.sessions, keys.users, limit)
        try:
            try:
                reply = await self._client.evalsha(sha, 2, *words)
            except NoScriptError:
                await self._client.script_load(READ.source)
                reply = await self._client.evalsha(sha, 2, *words)
        except IO_ERRORS as exc:
            raise BackendUnavailable(f"room presence unavailable: {brief(exc)}") from exc
        count, users, flat = reply
        members = [
            (as_bytes(flat[i]).decode(), as_bytes(flat[i + 1]).decode() or None)
            for i in range(0, len(flat), 2)
        ]
        return PresenceRead(int(count), int(users), members, int(count) > len(members))


async def settled(futures: Sequence[_Future]) -> bool:
    """Wait for every future; whether all of them succeeded."""
    if not futures:
        return True
    results = await asyncio.gather(*futures, return_exceptions=True)
    return not any(isinstance(result, BaseException) for result in results)
