"""Rooms' positions and history in Redis: the arguments of the publish
script, and the reads and rotations a node asks for
(docs/HISTORY-PRESENCE.md, "Positions", "Recovery", "history").

Invariants:
    * Every call names all the keys its script touches (one hash tag per
      room, :class:`~broker.backends.redis.envelope.RoomKeys`). Scripts are
      loaded once by :meth:`History.load` and called by SHA; a Redis that
      forgot them (NOSCRIPT: SCRIPT FLUSH, a restart) gets them again, and
      the call it did not run goes again.
    * What a node remembers of a room only saves Redis work, never decides
      a position: the epoch it remembers is checked by the publish script
      (:mod:`.scripts`), and it is learnt only from publish replies, whose
      offset is at least 1.
    * A node asks the publish script to refresh a room's expiry unless a
      refresh it asked for less than ``refresh`` (``ttl / 16``) ago was
      confirmed by Redis. The script sets ``ttl + refresh``, counted from
      when it ran, never earlier than when the node asked: so the room's
      keys outlive every message the node published by at least ``ttl``
      (``meta_ttl``), whoever refreshed last.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from time import monotonic
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from broker.backends.base import BackendUnavailable, HistoryRead, Position
from broker.backends.memory_history import new_epoch
from broker.backends.redis.client import IO_ERRORS, as_bytes
from broker.backends.redis.envelope import RoomKeys, unpack
from broker.backends.redis.errors import brief
from broker.backends.redis.scripts import ROTATE, Script, publish_script, read_script

__all__ = ["REFRESH_FRACTION", "History"]

REFRESH_FRACTION = 16
"""A room's expiry is refreshed at most every ``ttl / REFRESH_FRACTION``."""

_PRUNE_AT_LEAST = 1024
"""Rooms remembered before the first pruning of stale ones."""


class _Room:
    """What a node remembers of a room it published to."""

    __slots__ = ("epoch", "refreshed")

    def __init__(self, epoch: bytes, refreshed: float) -> None:
        self.epoch = epoch
        self.refreshed = refreshed
        """Monotonic time a confirmed refresh was asked for."""


class History:
    """How one node reads and writes rooms' positions and history.

    Args:
        client: the publisher connection (direct calls).
        namespace: prefix of every key.
        size: messages kept per room (0: no history; never called then).
        ttl: seconds a room's messages are kept after its last message.
        meta_ttl: seconds its position is kept after its last message.
    """

    def __init__(
        self, client: aioredis.Redis, namespace: str, size: int, ttl: float, meta_ttl: float
    ) -> None:
        self._client = client
        self._namespace = namespace
        self.size = size
        self._refresh = ttl / REFRESH_FRACTION
        refresh_ms = int(ttl * 1000) // REFRESH_FRACTION
        self.publish_script = publish_script(
            max(size, 1), int(ttl * 1000), int(meta_ttl * 1000), refresh_ms
        )
        """The script every publish with history calls (size and TTLs in it)."""
        self._read = read_script(int(meta_ttl * 1000), refresh_ms, max(size, 1))
        self._rooms: dict[bytes, _Room] = {}
        self._epoch_prefix = (new_epoch() + "-").encode()
        self._epochs = 0
        self._prune_at = _PRUNE_AT_LEAST

    def keys(self, room: str) -> RoomKeys:
        """The keys and channel of ``room``."""
        return RoomKeys.of(self._namespace, room)

    async def load(self) -> None:
        """Load every script (at start, so the first publish finds it).

        Raises:
            RedisError, OSError, TimeoutError: Redis refused or is unreachable.
        """
        for script in (self.publish_script, self._read, ROTATE):
            await self._client.script_load(script.source)

    def publish(
        self, keys: RoomKeys, head: bytes, payload: bytes
    ) -> tuple[tuple[bytes | int, ...], Callable[[Any], Position]]:
        """The EVALSHA of the publish script for ``payload`` (a ``message``
        frame without a position) after the envelope head ``head``, and what
        turns its reply into the message's position."""
        now = monotonic()
        room = self._rooms.get(keys.position)
        if room is None:
            # The epoch the script starts if the room has no position. Not a
            # fresh random one per say (os.urandom costs more than the rest
            # of this method): this process's random prefix and a count, so
            # every epoch it can start is still new.
            self._epochs += 1
            sent = b"%s%x" % (self._epoch_prefix, self._epochs)
            flag: tuple[bytes, ...] = (b"new",)
        else:
            sent = room.epoch
            # Every argument costs Redis CPU: the flag only when it is needed.
            flag = (b"refresh",) if now - room.refreshed >= self._refresh else ()
        refresh = bool(flag)

        def position(reply: Any) -> Position:
            offset, epoch = (reply, sent) if isinstance(reply, int) else reply
            epoch = as_bytes(epoch)
            self._remember(keys.position, epoch, now if refresh else None)
            return Position(int(offset), epoch.decode())

        # The envelope in the two pieces around the offset's first place
        # (scripts.py): the script joins them with the offset and the epoch.
        rest = b'\n%s\n%s,"offset":' % (sent, payload[:-1])
        return (b"EVALSHA", self.publish_script.sha, 3, *keys, sent, head, rest, *flag), position

    def _remember(self, position_key: bytes, epoch: bytes, refreshed: float | None) -> None:
        room = self._rooms.get(position_key)
        if room is None:
            if len(self._rooms) >= self._prune_at:
                self._prune()
            # Not confirmed as refreshed: the next publish refreshes.
            self._rooms[position_key] = _Room(epoch, -math.inf if refreshed is None else refreshed)
            return
        room.epoch = epoch
        if refreshed is not None and refreshed > room.refreshed:
            room.refreshed = refreshed

    def _prune(self) -> None:
        # A room not refreshed within `refresh` gains nothing from being
        # remembered but its epoch (one slow path on its next publish).
        stale = monotonic() - self._refresh
        self._rooms = {key: room for key, room in self._rooms.items() if room.refreshed > stale}
        self._prune_at = max(_PRUNE_AT_LEAST, 2 * len(self._rooms))

    def published(self) -> dict[str, str]:
        """Rooms this node published to lately, with the epoch it used:
        every room it remembers (a room is forgotten once no publish
        refreshed it for ``ttl / REFRESH_FRACTION`` and more than 1,024 are
        remembered)."""
        start = len(self._namespace) + 2  # b"{" namespace b":"
        return {
            key[start:-3].decode(): room.epoch.decode()  # ... b"}:p"
            for key, room in self._rooms.items()
        }

    async def read(
        self, room: str, after: int, before: int | None, limit: int | None
    ) -> HistoryRead:
        """See :meth:`~broker.backends.base.Backend.read_history`."""
        keys = self.keys(room)
        reply = await self._call(
            self._read,
            (keys.position, keys.history),
            (
                new_epoch().encode(),
                after,
                b"" if before is None else before,
                b"" if limit is None else limit,
            ),
        )
        epoch, offset, first, envelopes = reply
        return HistoryRead(
            as_bytes(epoch).decode(),
            int(offset),
            [(int(first) + i, unpack(as_bytes(data))[1]) for i, data in enumerate(envelopes)],
        )

    async def rotate(self, room: str, stale_epoch: str) -> None:
        """See :meth:`~broker.backends.base.Backend.rotate_epoch`."""
        keys = self.keys(room)
        self._rooms.pop(keys.position, None)
        await self._call(ROTATE, (keys.position, keys.history), (stale_epoch.encode(),))

    async def _call(
        self, script: Script, keys: tuple[bytes, ...], args: tuple[bytes | int, ...]
    ) -> Any:
        try:
            try:
                return await self._evalsha(script, keys, args)
            except NoScriptError:
                await self._client.script_load(script.source)
                return await self._evalsha(script, keys, args)
        except IO_ERRORS as exc:
            raise BackendUnavailable(f"room history unavailable: {brief(exc)}") from exc

    async def _evalsha(
        self, script: Script, keys: tuple[bytes, ...], args: tuple[bytes | int, ...]
    ) -> Any:
        # redis-py types the SHA and the arguments as str: bytes go as they are.
        sha: Any = script.sha
        words: Any = (*keys, *args)
        return await self._client.evalsha(sha, len(keys), *words)
