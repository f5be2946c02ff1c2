"""What ``broker top`` shows of each node, from two readings (no I/O).

Counters become rates over the time between two readings of the same node;
a counter that went down (the node restarted between them) gives no rate
rather than a negative one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from broker.top.scrape import Scrape

__all__ = ["NodeView", "node_view", "snapshot", "totals"]


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node as the view shows it; ``None`` where a figure is unknown.

    Attributes:
        url: the node's base URL.
        node: its node id.
        up: whether it answered.
        error: why it did not.
        connections: open client connections.
        rooms: rooms with a member on the node.
        memberships: (room, member) pairs on the node.
        messages_in_per_s: says accepted from its clients per second.
        messages_out_per_s: fan-outs to its members per second.
        deliveries_per_s: frames handed to member sockets per second.
        slow_consumer_disconnects: clients closed with 1013 since it started.
        backend: ``up``, ``down`` (Redis unreachable) or ``draining``.
        loop_lag_seconds: last measured event-loop lag.
        rss_bytes: resident memory of the node's process.
    """

    url: str
    node: str | None
    up: bool
    error: str | None = None
    connections: int | None = None
    rooms: int | None = None
    memberships: int | None = None
    messages_in_per_s: float | None = None
    messages_out_per_s: float | None = None
    deliveries_per_s: float | None = None
    slow_consumer_disconnects: int | None = None
    backend: str | None = None
    loop_lag_seconds: float | None = None
    rss_bytes: int | None = None


def _rate(name: str, before: Scrape | None, now: Scrape) -> float | None:
    if before is None or before.error is not None or before.node != now.node:
        return None
    seconds = now.at - before.at
    if name not in now.metrics or name not in before.metrics or seconds <= 0:
        return None
    delta = now.metrics[name] - before.metrics[name]
    return delta / seconds if delta >= 0 else None


def _count(now: Scrape, name: str) -> int | None:
    value = now.metrics.get(name)
    return None if value is None else int(value)


def _backend(now: Scrape) -> str | None:
    if now.metrics.get("roomcast_draining"):
        return "draining"
    up = now.metrics.get("roomcast_backend_up")
    return None if up is None else ("up" if up else "down")


def node_view(before: Scrape | None, now: Scrape) -> NodeView:
    """The view of a node read at ``now``, with rates since ``before`` (if any)."""
    if now.error is not None:
        node = before.node if before is not None else None
        return NodeView(now.url, node, up=False, error=now.error)
    return NodeView(
        now.url,
        now.node,
        up=True,
        connections=_count(now, "roomcast_connections_open"),
        rooms=_count(now, "roomcast_rooms"),
        memberships=_count(now, "roomcast_memberships"),
        messages_in_per_s=_rate("roomcast_messages_in_total", before, now),
        messages_out_per_s=_rate("roomcast_messages_out_total", before, now),
        deliveries_per_s=_rate("roomcast_deliveries_total", before, now),
        slow_consumer_disconnects=_count(now, "roomcast_slow_consumer_disconnects_total"),
        backend=_backend(now),
        loop_lag_seconds=now.metrics.get("roomcast_event_loop_lag_seconds"),
        rss_bytes=_count(now, "process_resident_memory_bytes"),
    )


_SUMMED = (
    "connections",
    "memberships",
    "messages_in_per_s",
    "messages_out_per_s",
    "deliveries_per_s",
    "slow_consumer_disconnects",
    "rss_bytes",
)


def totals(views: Sequence[NodeView]) -> dict[str, Any]:
    """Cluster-wide figures: nodes up and down, and the sums over the nodes up.

    Rooms are not summed: a room with members on two nodes counts on both.
    """
    up = [view for view in views if view.up]
    summed: dict[str, Any] = {"nodes_up": len(up), "nodes_down": len(views) - len(up)}
    for name in _SUMMED:
        values = [getattr(view, name) for view in up]
        known = [value for value in values if value is not None]
        summed[name] = sum(known) if known else None
    return summed


def snapshot(views: Sequence[NodeView]) -> dict[str, Any]:
    """The view as plain data, for ``broker top --json``."""
    return {"nodes": [asdict(view) for view in views], "totals": totals(views)}
