"""The server publish API: ``POST /publish`` on the broker's port
(docs/PROTOCOL-ADDITIONS.md, "Server publish API").

A back-end service that holds the API key sends one ``message`` to a room
without opening a WebSocket::

    POST /publish
    Authorization: Bearer <api key>
    Content-Type: application/json

    {"room": "lobby", "body": {"text": "deploy finished"}, "user": "ci"}

Every member of the room, on every node, receives
``{"type":"message","room":"lobby","from":"server","body":...,"user":"ci"}``
(``user`` only when given). The answer is 202 ``{"status":"accepted"}`` once
the backend accepted the publish, exactly as ``ok`` answers a ``say``.

This module holds the endpoint's logic; the HTTP transport (reading the body
under the size limit, which answers 413) is the server's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Final

import msgspec

from broker.api_key import ApiKey
from broker.http_answer import HttpAnswer, error_answer, json_answer
from broker.node import Node
from broker.publish_outcome import failure_of
from broker.tokens import HeaderLookup
from protocol import ErrorCode, Message, encode, is_valid_room

__all__ = ["ACCEPTED", "PUBLISH_PATH", "SERVER_SENDER", "PublishApi"]

log = logging.getLogger("broker.publish_api")

PUBLISH_PATH: Final = "/publish"

SERVER_SENDER: Final = "server"
"""The ``from`` of a message published through the API. Session ids start
with ``s-``, so no session can be mistaken for it."""


class _PublishRequest(msgspec.Struct):
    room: str
    body: msgspec.Raw
    user: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | msgspec.UnsetType = (
        msgspec.UNSET
    )


_decoder = msgspec.json.Decoder(_PublishRequest)

ACCEPTED: Final = json_answer(202, {"status": "accepted"})
"""The 202 of a room without history (with history, it carries the position)."""


class PublishApi:
    """``POST /publish`` for one node.

    Args:
        node: publishes the message to the cluster.
        api_key: the bearer key a caller must present.
    """

    def __init__(self, node: Node, api_key: str | ApiKey) -> None:
        self._node = node
        self._key = api_key if isinstance(api_key, ApiKey) else ApiKey(api_key)

    def authorize(self, headers: HeaderLookup) -> HttpAnswer | None:
        """``None`` if ``headers`` carry the API key, else the 401 to answer."""
        return self._key.refusal(headers)

    async def handle(self, headers: HeaderLookup, body: bytes) -> HttpAnswer:
        """Answer one request whose body (at most the size limit) was read."""
        refused = self.authorize(headers)
        if refused is not None:
            return refused
        try:
            request = _decoder.decode(body)
        except msgspec.ValidationError as exc:
            return error_answer(400, ErrorCode.BAD_MESSAGE, str(exc))
        except msgspec.DecodeError as exc:
            return error_answer(400, ErrorCode.BAD_JSON, str(exc))
        room = request.room
        if not is_valid_room(room):
            message = f"bad room name {room[:140]!r}: 1-128 of A-Z a-z 0-9 _ . : @ -"
            return error_answer(400, ErrorCode.BAD_ROOM, message)
        payload = encode(
            Message(room=room, from_=SERVER_SENDER, body=request.body, user=request.user)
        )
        # No session to exclude: every member receives it.
        try:
            # Shielded: a caller that goes away must not cancel the acceptance,
            # or this node's members would miss what the others receive.
            position = await asyncio.shield(self._node.publish(room, "", payload))
        except Exception as exc:
            # The one mapping from a backend failure to a reply (as for `say`).
            failure = failure_of(exc)
            log.warning("publish API: room=%s failed (%s): %s", room, failure.code.value, exc)
            return error_answer(failure.http_status, failure.code, failure.message)
        if position is None:
            return ACCEPTED
        # docs/HISTORY-PRESENCE.md, "Positions": the 202 tells the position.
        accepted = {"status": "accepted", "offset": position.offset, "epoch": position.epoch}
        return json_answer(202, accepted)
