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
import hmac
import logging
from typing import Annotated, Final

import msgspec

from broker.http_answer import HttpAnswer, error_answer, json_answer
from broker.node import Node
from broker.publish_outcome import failure_of
from broker.tokens import HeaderLookup, Refusal, bearer_token
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


def _unauthorized(message: str) -> HttpAnswer:
    # RFC 6750, section 3: a 401 names the scheme the client should use.
    challenge = ("WWW-Authenticate", 'Bearer realm="roomcast"')
    return error_answer(401, ErrorCode.UNAUTHORIZED, message, headers=(challenge,))


class PublishApi:
    """``POST /publish`` for one node.

    Args:
        node: publishes the message to the cluster.
        api_key: the bearer key a caller must present.
    """

    def __init__(self, node: Node, api_key: str) -> None:
        self._node = node
        self._key = api_key.encode()

    def authorize(self, headers: HeaderLookup) -> HttpAnswer | None:
        """``None`` if ``headers`` carry the API key, else the 401 to answer."""
        token = bearer_token(headers)
        if token is None:
            return _unauthorized("an API key is required: Authorization: Bearer <key>")
        if isinstance(token, Refusal):
            return _unauthorized(token.reason)
        # Constant time: the comparison must not tell how much of a guess matched.
        if not hmac.compare_digest(token.encode(), self._key):
            return _unauthorized("wrong API key")
        return None

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
            await asyncio.shield(self._node.publish(room, "", payload))
        except Exception as exc:
            # The one mapping from a backend failure to a reply (as for `say`).
            failure = failure_of(exc)
            log.warning("publish API: room=%s failed (%s): %s", room, failure.code.value, exc)
            return error_answer(failure.http_status, failure.code, failure.message)
        return ACCEPTED
