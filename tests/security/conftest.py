"""Broker processes configured for the security tests, and helpers to see
what a refused handshake or an HTTP call answered."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.security.tokens import SECRET
from tests.support.processes import BrokerProcess

ORIGIN = "https://app.example.com"
API_KEY = "test-api-key-0123456789abcdef"
MAX_SIZE = 4096


@pytest.fixture(scope="package")
def secured() -> Iterator[BrokerProcess]:
    """One node that requires HS256 tokens, allows one origin and has the publish API.

    The secret and the API key are given as environment variables, as the
    README advises (flags show in ``ps``).
    """
    node = BrokerProcess(
        args=("--allowed-origins", ORIGIN, "--max-message-size", str(MAX_SIZE)),
        env={"BROKER_JWT_SECRET": SECRET, "BROKER_API_KEY": API_KEY},
    )
    yield node.start()
    node.cleanup()


@pytest.fixture(scope="package")
def anonymous() -> Iterator[BrokerProcess]:
    """One node with no security option at all: the default."""
    node = BrokerProcess()
    yield node.start()
    node.cleanup()


@pytest.fixture(scope="package")
def anonymous_v1() -> Iterator[BrokerProcess]:
    """An anonymous node without history: frames exactly as in PROTOCOL.md."""
    node = BrokerProcess(args=["--history-size", "0"])
    yield node.start()
    node.cleanup()


async def refused(url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """Open a WebSocket that must be refused; returns the HTTP status and JSON body."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, **kwargs):
            pass
    response = info.value.response
    return response.status_code, json.loads(response.body)


def post(
    url: str, body: bytes, key: str | None = API_KEY, content_type: str = "application/json"
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``POST`` ``body``; returns the status, the JSON answer and the headers."""
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, _json(response.headers, response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, _json(error.headers, error.read()), dict(error.headers)


def _json(headers: Message, body: bytes) -> dict[str, Any]:
    is_json = headers.get("Content-Type") == "application/json"
    return json.loads(body) if is_json else {}
