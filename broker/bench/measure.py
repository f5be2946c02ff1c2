"""From worker reports and /proc readings to the numbers a run reports (no I/O).

Definitions (the README's "Benchmarks" section says the same):
    * The measured window runs from the first say to the last delivery.
    * deliveries/s = distinct deliveries / window.
    * The offered rate is held when the publishers said at least 95 % of the
      offered says/s and deliveries/s over the window reached 95 % of the
      offered deliveries/s (a broker that falls behind stretches the window).
    * server CPU µs per delivery = CPU time of the server processes between
      ``Go`` and the last report, divided by the deliveries.
    * Redis CPU µs per say = CPU time of redis-server over the same span,
      divided by the says (subscribers present: it includes sending each
      message to every subscribed node); brokers + Redis CPU µs per delivery
      = both CPU times together, divided by the deliveries.
    * presence: a reply's time runs from its request's send to its
      arrival; the window from the first request to the last reply; server
      and Redis CPU per request = their CPU time over the window, divided by
      the requests (the room is quiet: nothing else runs).
    * recovery: the time to recovered is from the SIGKILL of the clients'
      node to each recovered ``ok``; ``recovery_s`` to the last one. CPU is
      that of the surviving nodes and of redis-server from the kill to the
      last report.
"""

from __future__ import annotations

from typing import Any

from broker.bench.histogram import Histogram
from broker.bench.messages import Connected, Dropped, Recovered, Result
from broker.bench.params import BenchParams
from broker.bench.presence_replies import Asked

__all__ = [
    "HELD_FRACTION",
    "connect_metrics",
    "delivery_metrics",
    "latency_summary",
    "presence_metrics",
    "recovery_metrics",
]

HELD_FRACTION = 0.95


def latency_summary(hist: Histogram) -> dict[str, int | float | None]:
    """p50, p99, p99.9, max and mean of ``hist`` (µs), and the sample count."""
    mean = hist.mean()
    return {
        "count": hist.count,
        "p50": hist.percentile(0.50),
        "p99": hist.percentile(0.99),
        "p99_9": hist.percentile(0.999),
        "max": hist.max if hist.count else None,
        "mean": round(mean, 1) if mean is not None else None,
    }


def _merged(parts: list[tuple[dict[int, int], int, int]]) -> Histogram:
    hist = Histogram()
    for sparse, total, maximum in parts:
        hist.merge(Histogram.from_sparse(sparse, total, maximum))
    return hist


def _per_second(count: float, seconds: float) -> float | None:
    return round(count / seconds, 1) if seconds > 0 else None


def _per(seconds: float | None, count: int, digits: int) -> float | None:
    """``seconds`` in µs per one of ``count``, or None without a reading or a count."""
    return round(seconds * 1e6 / count, digits) if seconds is not None and count else None


def delivery_metrics(
    results: list[Result],
    server_cpu_s: float | None,
    offered_says: float | None,
    offered_deliveries: float | None,
    redis_cpu_s: float | None = None,
) -> dict[str, Any]:
    """The metrics of a ``fanout`` or ``chat`` run (``redis_cpu_s``: of the
    redis-server whose PID the run knows, if any)."""
    delivered = sum(r.delivered for r in results)
    says = sum(r.says for r in results)
    errors: dict[str, int] = {}
    for r in results:
        for code, n in r.errors.items():
            errors[code] = errors.get(code, 0) + n
    first_send = min((r.first_send_ns for r in results if r.first_send_ns), default=0)
    last_send = max((r.last_send_ns for r in results), default=0)
    last_recv = max((r.last_recv_ns for r in results), default=0)
    window_s = (last_recv - first_send) / 1e9 if first_send and last_recv > first_send else 0.0
    send_s = (last_send - first_send) / 1e9 if first_send else 0.0
    deliveries_per_s = _per_second(delivered, window_s)
    # n says span n - 1 intervals of the schedule.
    says_per_s = _per_second(says - 1, send_s) if says > 1 else None
    held: bool | None = None
    if offered_says and offered_deliveries:
        held = (
            says_per_s is not None
            and deliveries_per_s is not None
            and says_per_s >= HELD_FRACTION * offered_says
            and deliveries_per_s >= HELD_FRACTION * offered_deliveries
        )
    hist = _merged([(r.hist, r.hist_total, r.hist_max) for r in results])
    return {
        "expected_deliveries": sum(r.expected for r in results),
        "deliveries": delivered,
        "missing": sum(r.missing for r in results),
        "duplicates": sum(r.duplicates for r in results),
        "out_of_order": sum(r.out_of_order for r in results),
        "unexpected": sum(r.unexpected for r in results),
        "offset_gaps": sum(r.offset_gaps for r in results),
        "offset_backwards": sum(r.offset_backwards for r in results),
        "epoch_changes": sum(r.epoch_changes for r in results),
        "joins_with_position": sum(r.joins_with_position for r in results),
        "errors": errors,
        "closed_connections": sum(r.closed for r in results),
        "says": says,
        "acks": sum(r.acks for r in results),
        "window_s": round(window_s, 4),
        "deliveries_per_s": deliveries_per_s,
        "says_per_s": says_per_s,
        "latency_us": latency_summary(hist),
        "offered_says_per_s": offered_says,
        "offered_deliveries_per_s": offered_deliveries,
        "rate_held": held,
        "max_publisher_lag_ms": round(max((r.max_lag_ms for r in results), default=0.0), 3),
        "server_cpu_s": round(server_cpu_s, 3) if server_cpu_s is not None else None,
        "server_cpu_us_per_delivery": _per(server_cpu_s, delivered, 3),
        "redis_cpu_s": round(redis_cpu_s, 3) if redis_cpu_s is not None else None,
        "redis_cpu_us_per_say": _per(redis_cpu_s, says, 3),
        "total_cpu_us_per_delivery": _per(
            server_cpu_s + redis_cpu_s
            if server_cpu_s is not None and redis_cpu_s is not None
            else None,
            delivered,
            3,
        ),
    }


def connect_metrics(connected: list[Connected], server_cpu_s: float | None) -> dict[str, Any]:
    """The metrics of opening and joining every connection (the ``connect`` scenario)."""
    joined = sum(c.joined for c in connected)
    first = min(c.first_ns for c in connected)
    last = max(c.last_ns for c in connected)
    seconds = (last - first) / 1e9
    hist = _merged([(c.hist, c.hist_total, c.hist_max) for c in connected])
    return {
        "connections": joined + sum(c.failed for c in connected),
        "joined": joined,
        "failed": sum(c.failed for c in connected),
        "duration_s": round(seconds, 4),
        "connections_per_s": _per_second(joined, seconds),
        "time_to_joined_us": latency_summary(hist),
        "server_cpu_s": round(server_cpu_s, 3) if server_cpu_s is not None else None,
        "server_cpu_us_per_connection": (
            round(server_cpu_s * 1e6 / joined, 1) if server_cpu_s is not None and joined else None
        ),
    }


def _span_s(start_ns: int, end_ns: int) -> float | None:
    return round((end_ns - start_ns) / 1e9, 4) if end_ns > start_ns else None


def recovery_metrics(
    params: BenchParams,
    kill_ns: int,
    gap_said_ns: int,
    dropped: list[Dropped],
    recovered: list[Recovered],
    server_cpu_s: float | None,
    redis_cpu_s: float | None,
) -> dict[str, Any]:
    """The metrics of a ``recovery`` run."""
    hist = _merged([(r.hist, r.hist_total, r.hist_max) for r in recovered])
    last_ok = max((r.last_ns for r in recovered), default=0)
    first_rejoin = min((r.first_ns for r in recovered), default=0)
    count = sum(r.recovered for r in recovered)
    return {
        "clients": params.connections,
        "rooms": params.rooms,
        "gap": params.gap,
        "dropped": sum(d.closed for d in dropped),
        "recovered": count,
        "not_recovered": sum(r.not_recovered for r in recovered),
        "wrong": sum(r.wrong for r in recovered),
        "failed": sum(r.failed for r in recovered),
        "replayed": sum(r.replayed for r in recovered),
        # Every client stood at its room's position when the node was killed.
        "expected_replayed": params.connections * params.gap,
        "recovery_s": _span_s(kill_ns, last_ok),
        "time_to_recovered_us": latency_summary(hist),
        "gap_said_s": _span_s(kill_ns, gap_said_ns),
        "rejoin_s": _span_s(first_rejoin, last_ok),
        "server_cpu_s": round(server_cpu_s, 3) if server_cpu_s is not None else None,
        "server_cpu_us_per_recovery": _per(server_cpu_s, count, 1),
        "redis_cpu_s": round(redis_cpu_s, 3) if redis_cpu_s is not None else None,
    }


def presence_metrics(
    params: BenchParams,
    asked: Asked,
    server_cpu_s: float | None,
    redis_cpu_s: float | None,
) -> dict[str, Any]:
    """The metrics of a ``presence`` run (``asked``: what the requests got)."""
    window_s = (asked.last_ns - asked.first_ns) / 1e9
    replies = asked.right + asked.wrong + sum(asked.errors.values())
    return {
        "members": params.members + 1,  # the asker is in the room too
        "requests": params.requests,
        "in_flight": params.in_flight,
        "replies": replies,
        "right": asked.right,
        "wrong": asked.wrong,
        "errors": dict(asked.errors),
        "reply_us": latency_summary(asked.hist),
        "window_s": round(window_s, 4),
        "requests_per_s": _per_second(replies, window_s),
        "server_cpu_s": round(server_cpu_s, 3) if server_cpu_s is not None else None,
        "server_cpu_us_per_request": _per(server_cpu_s, replies, 1),
        "redis_cpu_s": round(redis_cpu_s, 3) if redis_cpu_s is not None else None,
        "redis_cpu_us_per_request": _per(redis_cpu_s, replies, 1),
    }
