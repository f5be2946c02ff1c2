"""Reading nodes: ``GET /healthz`` (the node id) and ``GET /metrics`` (the
figures), every node at once, each within a timeout.

A node that does not answer, or answers something that is not our metrics,
gives a :class:`Scrape` with ``error`` set: the view shows it as down
rather than failing.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["Scrape", "base_url", "parse_metrics", "scrape", "scrape_all"]


@dataclass(frozen=True, slots=True)
class Scrape:
    """One reading of one node.

    Attributes:
        url: the node's base URL (``http://127.0.0.1:8765``).
        at: ``time.monotonic()`` when its metrics were read.
        node: its node id, from ``/healthz``; ``None`` if unknown.
        metrics: every sample without labels, by sample name
            (``roomcast_messages_in_total``).
        error: why the node could not be read; ``None`` when it was.
    """

    url: str
    at: float
    node: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None


def base_url(text: str) -> str:
    """``text`` as an HTTP base URL: ``host:port`` and ``ws://host:port/ws`` work too."""
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"


def parse_metrics(text: str) -> dict[str, float]:
    """The samples without labels of a Prometheus text exposition, by name.

    Raises:
        ValueError: ``text`` is not the Prometheus text format.
    """
    # Imported here: `broker --help` and `broker serve` never need the parser.
    from prometheus_client.parser import text_string_to_metric_families

    return {
        sample.name: float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def _get(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as error:
        # /healthz answers 503 with the same body while Redis is away.
        with error:
            body = error.read()
        if error.code != 503:
            raise
        return body


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}"
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        return reason.strerror or str(reason) if isinstance(reason, OSError) else str(reason)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def scrape(url: str, timeout: float = 1.0) -> Scrape:
    """Read one node (``url`` is its base URL); never raises for a node's fault."""
    try:
        health = json.loads(_get(url + "/healthz", timeout))
        text = _get(url + "/metrics", timeout).decode()
        at = time.monotonic()
        metrics = parse_metrics(text)
    except (OSError, ValueError) as exc:  # URLError and timeouts are OSErrors
        return Scrape(url, time.monotonic(), error=_reason(exc))
    node = health.get("node") if isinstance(health, dict) else None
    return Scrape(url, at, node if isinstance(node, str) else None, metrics)


def scrape_all(urls: Sequence[str], timeout: float = 1.0) -> list[Scrape]:
    """Read every node at once; one slow node costs at most ``timeout``."""
    with ThreadPoolExecutor(max_workers=min(len(urls), 32) or 1) as pool:
        return list(pool.map(lambda url: scrape(url, timeout), urls))
