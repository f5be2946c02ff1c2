"""The human-readable table of a run, made from its JSON record (no I/O)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["format_table"]

Row = tuple[str, Callable[[dict[str, Any]], str]]


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


_DELIVERY_ROWS: list[Row] = [
    (
        "deliveries (got / expected)",
        lambda m: f"{m['deliveries']:,} / {m['expected_deliveries']:,}",
    ),
    (
        "missing / duplicate / out of order",
        lambda m: f"{m['missing']} / {m['duplicates']} / {m['out_of_order']}",
    ),
    ("deliveries/s", lambda m: _num(m["deliveries_per_s"])),
    ("says/s", lambda m: _num(m["says_per_s"])),
    ("offered rate held", _held),
    ("latency ms p50 / p99 / p99.9 / max", _latency("latency_us")),
    ("server CPU µs per delivery", lambda m: _num(m["server_cpu_us_per_delivery"], 2)),
    ("server CPU s in the window", lambda m: _num(m["server_cpu_s"], 2)),
    ("measured window s", lambda m: _num(m["window_s"], 2)),
    ("setup s (connect + join)", lambda m: _num(m.get("setup_s"), 2)),
]

_IDLE_ROWS: list[Row] = [
    ("connections / rooms", lambda m: f"{m['connections']:,} / {m['rooms']:,}"),
    ("server RSS MiB before / after", lambda m: f"{_mib(m['rss_before_bytes'])} / "
     f"{_mib(m['rss_after_bytes'])}"),
    ("server RSS KiB per connection", lambda m: _kib(m["rss_per_connection_bytes"])),
    ("setup s (connect + join)", lambda m: _num(m.get("setup_s"), 2)),
]  # fmt: skip

_CONNECT_ROWS: list[Row] = [
    ("joined / failed", lambda m: f"{m['joined']:,} / {m['failed']:,}"),
    ("connections/s", lambda m: _num(m["connections_per_s"])),
    ("time to joined ms p50 / p99 / p99.9 / max", _latency("time_to_joined_us")),
    ("server CPU µs per connection", lambda m: _num(m["server_cpu_us_per_connection"], 1)),
]

_ROWS = {
    "fanout": _DELIVERY_ROWS,
    "chat": _DELIVERY_ROWS,
    "idle": _IDLE_ROWS,
    "connect": _CONNECT_ROWS,
}


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
    for label, cell in rows:
        body.append([label, *(_safe(cell, r["metrics"]) for r in results)])
    if any("redis_cpu_s" in r["metrics"] for r in results):
        body.append(["redis CPU s", *(_num(r["metrics"].get("redis_cpu_s"), 2) for r in results)])
    body.append(["client workers CPU %", *(_workers(r) for r in results)])
    comparison = record.get("comparison")
    if comparison:
        header.append(f"ratio roomcast / {comparison['baseline']}")
        for row in body:
            row.append("")
        for path, values in comparison.items():
            if path != "baseline":
                body.append([f"ratio {path}", *([""] * len(results)), _num(values["ratio"], 3)])
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    for row in [header, *body]:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
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
