"""The server API's read endpoints (docs/HISTORY-PRESENCE.md, "Server API"),
behind ``--api-key``:

* ``GET /rooms/{room}/history?limit=N&before=OFFSET``: the ``history`` reply
  without ``type`` and ``ref``: the room's current position and its kept
  messages, oldest first, each exactly as members received it.
* ``GET /rooms/{room}/presence``: the ``presence`` reply without ``type`` and
  ``ref``: every session in the room on every node (at most
  :data:`~protocol.MAX_PRESENCE_MEMBERS` listed), cluster-wide.

Errors use the one HTTP error body.
"""

from __future__ import annotations

import logging
import re
from typing import Final
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from broker.api_key import ApiKey
from broker.backends.base import BackendUnavailable
from broker.http_answer import HttpAnswer, error_answer
from broker.node import Node
from broker.tokens import HeaderLookup
from protocol import ErrorCode, encode_history, is_valid_room
from protocol.codec import encode_presence

__all__ = ["ROOMS_PREFIX", "RoomsApi", "room_endpoint"]

log = logging.getLogger("broker.rooms_api")

ROOMS_PREFIX: Final = "/rooms/"
_ENDPOINT = re.compile(r"/rooms/([^/]*)/(history|presence)")
_DIGITS = re.compile(r"[0-9]{1,18}")


def room_endpoint(path: str) -> tuple[str, str] | None:
    """``(room, endpoint)`` of a ``/rooms/{room}/{endpoint}`` path, else ``None``."""
    match = _ENDPOINT.fullmatch(path)
    if match is None:
        return None
    return unquote(match.group(1)), match.group(2)


class RoomsApi:
    """The read endpoints of one node.

    Args:
        node: reads the room's history and presence.
        api_key: the key a caller must present.
        history_size: the node's ``--history-size`` (bounds ``limit``).
    """

    def __init__(self, node: Node, api_key: ApiKey, history_size: int) -> None:
        self._node = node
        self._key = api_key
        self._history_size = history_size

    async def answer(self, endpoint: str, target: str, headers: HeaderLookup) -> HttpAnswer:
        """Answer ``GET /rooms/{room}/{endpoint}``, an ``endpoint`` that
        :func:`room_endpoint` found."""
        if endpoint == "presence":
            return await self.presence(target, headers)
        return await self.history(target, headers)

    async def history(self, target: str, headers: HeaderLookup) -> HttpAnswer:
        """Answer ``GET /rooms/{room}/history`` (``target`` with its query)."""
        checked = self._checked_room(target, headers)
        if isinstance(checked, HttpAnswer):
            return checked
        room, split = checked
        query = parse_qs(split.query, keep_blank_values=True)
        limit = _whole(query, "limit", 1, max(self._history_size, 1))
        before = _whole(query, "before", 1, None)
        for bad in (limit, before):
            if isinstance(bad, HttpAnswer):
                return bad
        assert not isinstance(limit, HttpAnswer) and not isinstance(before, HttpAnswer)
        try:
            read = await self._node.history(room, limit, before)
        except BackendUnavailable as exc:
            log.warning("history API: room=%s: %s", room, exc)
            return error_answer(503, ErrorCode.UNAVAILABLE, "the backend could not be read")
        if read is None:
            return HttpAnswer(200, encode_history(room, None, [], http=True))
        frames = [frame for _, frame in read.messages]
        return HttpAnswer(200, encode_history(room, (read.offset, read.epoch), frames, http=True))

    async def presence(self, target: str, headers: HeaderLookup) -> HttpAnswer:
        """Answer ``GET /rooms/{room}/presence`` (``target`` with its query,
        which is ignored)."""
        checked = self._checked_room(target, headers)
        if isinstance(checked, HttpAnswer):
            return checked
        room = checked[0]
        try:
            read = await self._node.presence(room)
        except BackendUnavailable as exc:
            log.warning("presence API: room=%s: %s", room, exc)
            return error_answer(503, ErrorCode.UNAVAILABLE, "the backend could not be read")
        return HttpAnswer(
            200,
            encode_presence(room, read.count, read.users, read.members, read.truncated, http=True),
        )

    def _checked_room(
        self, target: str, headers: HeaderLookup
    ) -> tuple[str, SplitResult] | HttpAnswer:
        # The key first (401 tells nothing about rooms), then the room (400).
        refused = self._key.refusal(headers)
        if refused is not None:
            return refused
        split = urlsplit(target)
        found = room_endpoint(split.path)
        assert found is not None, "routed here only for a /rooms/{room}/... path"
        room = found[0]
        if not is_valid_room(room):
            message = f"bad room name {room[:140]!r}: 1-128 of A-Z a-z 0-9 _ . : @ -"
            return error_answer(400, ErrorCode.BAD_ROOM, message)
        return room, split


def _whole(
    query: dict[str, list[str]], name: str, low: int, high: int | None
) -> int | HttpAnswer | None:
    # A query parameter that must be one whole number in [low, high].
    values = query.get(name)
    if values is None:
        return None
    text = values[-1] if len(values) == 1 else ""
    if _DIGITS.fullmatch(text) is None:
        message = f"{name} must be a whole number - at `{name}`"
        return error_answer(400, ErrorCode.BAD_MESSAGE, message)
    value = int(text)
    if value < low or (high is not None and value > high):
        upper = "" if high is None else f" to {high}"
        message = f"{name} must be from {low}{upper} - at `{name}`"
        return error_answer(400, ErrorCode.BAD_MESSAGE, message)
    return value
