"""Prometheus metrics of a node (``GET /metrics``), read at scrape time.

Why a collector rather than ``Counter.inc()`` on the hot path: a Prometheus
counter takes a lock per increment, which would cost more than the delivery
it counts. The node keeps plain integers (:class:`broker.counters.Counters`);
this module turns them into metric families only when scraped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

if TYPE_CHECKING:
    from broker.node import Node

__all__ = ["render_metrics"]


class _NodeCollector:
    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node, hub, counters = self.node, self.node.hub, self.node.counters
        backend = node.backend.stats()
        yield _gauge("roomcast_connections_open", "Open client connections", counters.sessions)
        yield _counter(
            "roomcast_connections", "Client connections accepted", counters.connections_total
        )
        yield _counter(
            "roomcast_connections_refused",
            "Handshakes refused because the node was full or draining",
            counters.connections_refused,
        )
        yield _gauge("roomcast_rooms", "Rooms with a member on this node", len(hub.rooms()))
        yield _gauge("roomcast_memberships", "Room memberships on this node", hub.memberships())
        yield _counter(
            "roomcast_messages_in", "Says accepted from this node's clients", counters.says
        )
        yield _counter(
            "roomcast_messages_out", "Messages fanned out to this node's members", hub.fanouts
        )
        yield _counter("roomcast_deliveries", "Frames handed to member sockets", hub.deliveries)
        yield _counter("roomcast_bytes_out", "Bytes of fanned-out frames", hub.bytes_out)
        yield _counter(
            "roomcast_socket_writes",
            "Coalesced socket writes of queued frames (deliveries / writes = frames per write)",
            node.scheduler.writes,
        )
        errors = CounterMetricFamily(
            "roomcast_errors", "Error replies sent, by code", labels=["code"]
        )
        for code, count in sorted(counters.errors.items()):
            errors.add_metric([code], count)
        yield errors
        yield _counter(
            "roomcast_slow_consumer_disconnects",
            "Clients closed with 1013 for not reading",
            counters.slow_consumers,
        )
        yield _counter(
            "roomcast_publish_failures", "Publishes the backend refused", counters.publish_failures
        )
        yield _counter(
            "roomcast_backend_reconnects",
            "Backend subscriber reconnects",
            backend.get("reconnects", 0),
        )
        yield _counter(
            "roomcast_backend_canary_misses",
            "Times the node found its own subscription deaf",
            backend.get("canary_misses", 0),
        )
        yield _gauge(
            "roomcast_backend_canary_lag_seconds",
            "Round trip of the last canary through the backend",
            backend.get("canary_lag_seconds", 0.0),
        )
        yield _gauge("roomcast_backend_up", "1 if the backend is reachable", node.backend.healthy())
        yield from _shard_metrics(backend.get("shards", ()))
        yield _gauge("roomcast_draining", "1 while the node drains", node.draining)
        yield _gauge(
            "roomcast_event_loop_lag_seconds", "Last measured event-loop lag", counters.loop_lag
        )
        latency = counters.latency
        histogram = HistogramMetricFamily(
            "roomcast_delivery_latency_seconds",
            "From a say accepted on its origin node to its fan-out on this node",
        )
        histogram.add_metric([], latency.buckets(), latency.sum)
        yield histogram


def _shard_metrics(shards: Iterable[Mapping[str, Any]]) -> Iterator[Metric]:
    # On a Redis Cluster: one series per shard (its master's host:port).
    shards = list(shards)
    if not shards:
        return
    up = GaugeMetricFamily(
        "roomcast_backend_shard_up",
        "1 while the shard's canary comes back (its rooms can be served)",
        labels=["shard"],
    )
    lag = GaugeMetricFamily(
        "roomcast_backend_shard_canary_lag_seconds",
        "Round trip of the shard's last canary",
        labels=["shard"],
    )
    misses = CounterMetricFamily(
        "roomcast_backend_shard_canary_misses",
        "Times the node found its subscription on the shard deaf",
        labels=["shard"],
    )
    rooms = GaugeMetricFamily(
        "roomcast_backend_shard_rooms", "Rooms subscribed on the shard", labels=["shard"]
    )
    for shard in shards:
        name = [str(shard["shard"])]
        up.add_metric(name, float(shard["up"]))
        lag.add_metric(name, float(shard["canary_lag_seconds"]))
        misses.add_metric(name, float(shard["canary_misses"]))
        rooms.add_metric(name, float(shard["rooms"]))
    yield from (up, lag, misses, rooms)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))


_PROCESS = ProcessCollector(registry=None)


def render_metrics(node: Node) -> bytes:
    """The Prometheus text exposition of ``node``'s metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_NodeCollector(node))
    # process_resident_memory_bytes, process_cpu_seconds_total,
    # process_open_fds, process_start_time_seconds: read from /proc per scrape.
    registry.register(_PROCESS)
    return generate_latest(registry)
