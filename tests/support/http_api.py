"""The node's HTTP API as a test calls it: one request, its status and its
JSON answer."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

__all__ = ["call"]


def call(
    method: str, url: str, body: Any = None, key: str | None = None, timeout: float = 5.0
) -> tuple[int, dict[str, Any]]:
    """``method url`` with ``body`` as JSON and ``key`` as the bearer API key.

    Returns:
        The status and the JSON answer (``{}`` when the answer is not JSON).
    """
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _json(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _json(error.read())


def _json(raw: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(raw)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}
