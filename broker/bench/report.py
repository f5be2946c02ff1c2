"""The human-readable table of a run, made from its JSON record (no I/O)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any

from broker.bench.comparison import comparison_lines

__all__ = ["column_help", "format_table"]

Row = tuple[str, Callable[[dict[str, Any]], str], str]
"""A table row: its label, how to read its cell from a target's metrics, and
what it means (shown by ``--help``)."""


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:,.2f}"


def _latency(key: str) -> Callable[[dict[str, Any]], str]:
    def cell(m: dict[str, Any]) -> str:
        lat = m.get(key) or {}
        return " / ".join(_ms(lat.get(q)) for q in ("p50", "p99", "p99_9", "max"))

    return cell


def _held(m: dict[str, Any]) -> str:
    held = m.get("rate_held")
    if held is None:
        return "- (saturating: no --rate)" if m.get("offered_says_per_s") is None else "-"
    offered = _num(m.get("offered_deliveries_per_s"))
    return f"{'yes' if held else 'NO'} (offered {offered}/s)"


def _kib(value: float | None) -> str:
    return "-" if value is None else f"{value / 1024:,.1f}"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / (1 << 20):,.1f}"


_LATENCY_HELP = "p50 / p99 / p99.9 / max, in a histogram with at most 1/64 error, never understated"

_DELIVERY_ROWS: list[Row] = [
    (
        "deliveries (got / expected)",
        lambda m: f"{m['deliveries']:,} / {m['expected_deliveries']:,}",
        "distinct messages the members received / messages x members that should hear them",
    ),
    (
        "missing / duplicate / out of order",
        lambda m: f"{m['missing']} / {m['duplicates']} / {m['out_of_order']}",
        "deliveries never received / received twice / received after a later one of the "
        "same publisher; any of them fails the run",
    ),
    (
        "deliveries/s",
        lambda m: _num(m["deliveries_per_s"]),
        "deliveries divided by the measured window",
    ),
    (
        "says/s",
        lambda m: _num(m["says_per_s"]),
        "say requests all publishers sent per second, from the first say to the last",
    ),
    (
        "offered rate held",
        _held,
        "paced runs (--rate, chat): yes when the publishers said at least 95 % of the offered "
        "says/s and deliveries/s reached 95 % of the offered deliveries/s",
    ),
    (
        "latency ms p50 / p99 / p99.9 / max",
        _latency("latency_us"),
        "from the send time written into each body to its arrival at the member: "
        + _LATENCY_HELP
        + "; saturating runs measure queueing, use --rate for latency under a given load",
    ),
    (
        "server CPU µs per delivery",
        lambda m: _num(m["server_cpu_us_per_delivery"], 2),
        "user + system CPU of the server processes and their children during the window, "
        "divided by the deliveries",
    ),
    (
        "server CPU s in the window",
        lambda m: _num(m["server_cpu_s"], 2),
        "that CPU time, in seconds (read from /proc in 10 ms ticks)",
    ),
    (
        "measured window s",
        lambda m: _num(m["window_s"], 2),
        "from the first say to the last delivery; under 1 s the run warns",
    ),
    (
        "setup s (connect + join)",
        lambda m: _num(m.get("setup_s"), 2),
        "from the first connection attempt to the last join ok (before the measured window)",
    ),
]

_IDLE_ROWS: list[Row] = [
    (
        "connections / rooms",
        lambda m: f"{m['connections']:,} / {m['rooms']:,}",
        "idle joined connections / the rooms they are in",
    ),
    (
        "server RSS MiB before / after",
        lambda m: f"{_mib(m['rss_before_bytes'])} / {_mib(m['rss_after_bytes'])}",
        "resident memory (VmRSS) of the server processes before connecting / once every "
        "connection joined and the joined events were delivered",
    ),
    (
        "server RSS KiB per connection",
        lambda m: _kib(m["rss_per_connection_bytes"]),
        "(after - before) / connections",
    ),
    (
        "setup s (connect + join)",
        lambda m: _num(m.get("setup_s"), 2),
        "from the first connection attempt to the last join ok",
    ),
]

_CONNECT_ROWS: list[Row] = [
    (
        "joined / failed",
        lambda m: f"{m['joined']:,} / {m['failed']:,}",
        "connections that connected and joined / that could not (any failure fails the run)",
    ),
    (
        "connections/s",
        lambda m: _num(m["connections_per_s"]),
        "joined connections divided by the time from the first attempt to the last join ok",
    ),
    (
        "time to joined ms p50 / p99 / p99.9 / max",
        _latency("time_to_joined_us"),
        "per connection, from its attempt to its join ok: " + _LATENCY_HELP,
    ),
    (
        "server CPU µs per connection",
        lambda m: _num(m["server_cpu_us_per_connection"], 1),
        "CPU of the server processes while connecting, divided by the joined connections",
    ),
]

_ROWS = {
    "fanout": _DELIVERY_ROWS,
    "chat": _DELIVERY_ROWS,
    "idle": _IDLE_ROWS,
    "connect": _CONNECT_ROWS,
}

_COMMON_HELP: list[tuple[str, str]] = [
    ("redis CPU s", "CPU of the redis-server the run started, during the window (--spawn-redis)"),
    (
        "client workers CPU %",
        "each load-generator worker's CPU time over the window; above 60 % the run warns, "
        "since the load generator may then limit the result",
    ),
]


def column_help(scenario: str) -> str:
    """What every row of ``scenario``'s table means, for ``--help``."""
    rows = [(label, meaning) for label, _, meaning in _ROWS[scenario]] + _COMMON_HELP
    width = max(len(label) for label, _ in rows)
    lines = ["what the table reports:"]
    for label, meaning in rows:
        lines.extend(_wrap(f"  {label.ljust(width)}  ", meaning))
    lines.append(
        "  with --compare, one sentence per headline number says how roomcast compares "
        "with the baseline"
    )
    return "\n".join(lines)


def _wrap(head: str, text: str, width: int = 100) -> list[str]:
    return textwrap.wrap(text, width, initial_indent=head, subsequent_indent=" " * len(head)) or [
        head.rstrip()
    ]


def _title(record: dict[str, Any]) -> str:
    p = record["params"]
    scenario = record["scenario"]
    match scenario:
        case "fanout":
            pace = f"offered {p['rate']:,.0f} deliveries/s" if p["rate"] else "saturating"
            shape = f"{p['members']:,} members, {p['messages']:,} messages, window {p['window']}, "
            shape += pace
        case "chat":
            shape = (
                f"{p['rooms']:,} rooms x {p['room_size']} members, each saying "
                f"{p['messages']:,} at {p['say_rate']}/s"
            )
        case _:
            shape = f"{p['connections']:,} connections in rooms of {p['room_size']}"
    if scenario in ("fanout", "chat"):
        shape += f", {p['body_size']}-byte bodies"
    return f"broker bench {scenario}: {shape}"


def _header(result: dict[str, Any]) -> str:
    nodes = result["nodes"]
    return f"{result['target']} ({result['backend']}, {nodes} node{'s' if nodes > 1 else ''})"


def _workers(result: dict[str, Any]) -> str:
    return ", ".join(f"{w['cpu_percent']:.0f}%" for w in result["workers"]) or "-"


def format_table(record: dict[str, Any]) -> str:
    """The record as a table: one column per target, a ratio column when comparing."""
    results = record["results"]
    rows: list[Row] = list(_ROWS[record["scenario"]])
    lines = [_title(record), ""]
    header = ["", *(_header(r) for r in results)]
    body: list[list[str]] = []
    for label, cell, _ in rows:
        body.append([label, *(_safe(cell, r["metrics"]) for r in results)])
    if any("redis_cpu_s" in r["metrics"] for r in results):
        body.append(["redis CPU s", *(_num(r["metrics"].get("redis_cpu_s"), 2) for r in results)])
    body.append(["client workers CPU %", *(_workers(r) for r in results)])
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    for row in [header, *body]:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    comparison = record.get("comparison")
    if comparison:
        lines.append("")
        lines.extend(comparison_lines(comparison, results[0]["target"]))
    for result in results:
        for problem in result["problems"]:
            lines.append(f"PROBLEM ({result['target']}): {problem}")
        for warning in result["warnings"]:
            lines.append(f"warning ({result['target']}): {warning}")
    lines.append("")
    lines.append("result: OK" if record["ok"] else "result: FAILED (see PROBLEM lines)")
    return "\n".join(lines)


def _safe(cell: Callable[[dict[str, Any]], str], metrics: dict[str, Any]) -> str:
    # A run that stopped early (failed joins) has no delivery metrics.
    try:
        return cell(metrics)
    except (KeyError, TypeError):
        return "-"
