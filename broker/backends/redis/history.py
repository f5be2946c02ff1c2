"""Rooms' positions and history in Redis: the arguments of the publish
script, and the reads and rotations a node asks for
(docs/HISTORY-PRESENCE.md, "Positions", "Recovery", "history").

Every call names all the keys its script touches (one hash tag per room,
:class:`~broker.backends.redis.envelope.RoomKeys`). Scripts are loaded once
by :meth:`History.load` and called by SHA; a Redis that forgot them
(NOSCRIPT: SCRIPT FLUSH, a restart) gets them again, and the call it did not
run goes again.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from broker.backends.base import BackendUnavailable, HistoryRead, Position
from broker.backends.memory_history import new_epoch
from broker.backends.redis.client import IO_ERRORS, as_bytes
from broker.backends.redis.envelope import RoomKeys
from broker.backends.redis.errors import brief
from broker.backends.redis.scripts import PUBLISH, READ, ROTATE, Script

__all__ = ["History", "position_of"]


def position_of(reply: list[Any]) -> Position:
    """The position that the publish script returned (``{offset, epoch}``)."""
    offset, epoch = reply
    return Position(int(offset), as_bytes(epoch).decode())


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
        self._ttl_ms = int(ttl * 1000)
        self._meta_ttl_ms = int(meta_ttl * 1000)

    def keys(self, room: str) -> RoomKeys:
        """The keys and channel of ``room``."""
        return RoomKeys.of(self._namespace, room)

    async def load(self) -> None:
        """Load every script (at start, so the first publish finds it).

        Raises:
            RedisError, OSError, TimeoutError: Redis refused or is unreachable.
        """
        for script in (PUBLISH, READ, ROTATE):
            await self._client.script_load(script.source)

    def publish_args(self, keys: RoomKeys, head: bytes, payload: bytes) -> tuple[bytes | int, ...]:
        """The EVALSHA of the publish script for ``payload`` (a ``message``
        frame without a position) after the envelope head ``head``."""
        return (
            b"EVALSHA",
            PUBLISH.sha,
            3,
            keys.position,
            keys.history,
            keys.channel,
            new_epoch().encode(),
            head,
            payload,
            self.size,
            self._ttl_ms,
            self._meta_ttl_ms,
        )

    async def read(
        self, room: str, after: int, before: int | None, limit: int | None
    ) -> HistoryRead:
        """See :meth:`~broker.backends.base.Backend.read_history`."""
        keys = self.keys(room)
        reply = await self._call(
            READ,
            (keys.position, keys.history),
            (
                new_epoch().encode(),
                after,
                b"" if before is None else before,
                b"" if limit is None else limit,
                self._meta_ttl_ms,
            ),
        )
        epoch, offset, first, frames = reply
        return HistoryRead(
            as_bytes(epoch).decode(),
            int(offset),
            [(int(first) + i, as_bytes(frame)) for i, frame in enumerate(frames)],
        )

    async def rotate(self, room: str, stale_epoch: str) -> None:
        """See :meth:`~broker.backends.base.Backend.rotate_epoch`."""
        keys = self.keys(room)
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
