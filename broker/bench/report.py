"""The human-readable table of a run, made from its JSON record (no I/O)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any

from broker.bench.comparison import comparison_lines

__all__ = ["column_help", "format_table", "shard_help"]

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
        "offset gaps / backwards / epoch changes",
        lambda m: f"{m['offset_gaps']} / {m['offset_backwards']} / {m['epoch_changes']}",
        "with history on, each member checks the rooms' offsets: offsets after its join "
        "position it never received (and that were not its own says') / messages whose offset "
        "was not above the last one (a duplicate or a reordering) / times the epoch changed; "
        "any of them fails the run",
    ),
    (
        "positions (history on)",
        lambda m: "yes" if m["joins_with_position"] else "no",
        "yes when the joins' ok carried the room's position, so offsets were checked "
        "(--history-size 0 turns history and positions off)",
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

_REDIS_ROWS: list[Row] = [
    (
        "Redis CPU µs per say",
        lambda m: _num(m["redis_cpu_us_per_say"], 2),
        "user + system CPU of redis-server (--spawn-redis, or --redis-pid; every server of "
        "--spawn-redis-cluster, replicas included) during the window, "
        "divided by the says: the publish (and its history script) plus sending it to every "
        "subscribed node",
    ),
    (
        "brokers + Redis CPU µs per delivery",
        lambda m: _num(m["total_cpu_us_per_delivery"], 2),
        "the server processes' and redis-server's CPU together, divided by the deliveries",
    ),
    (
        "Redis CPU s in the window",
        lambda m: _num(m["redis_cpu_s"], 2),
        "that redis-server CPU time, in seconds",
    ),
]
"""Shown when the run knows redis-server's PID."""

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
    (
        "connect rate /s",
        lambda m: _num(m.get("connections_per_s")),
        "connections / setup s: joined connections per second over the whole setup "
        "(bounded by --connect-rate and --connect-concurrency when given)",
    ),
    (
        "source addresses",
        lambda m: str(len(m.get("source_addresses") or [])) or "-",
        "loopback addresses the clients connected from (0: the kernel's choice); "
        "--source-addresses, or as many as the ephemeral port range needs",
    ),
    (
        "idle server CPU % of one core",
        lambda m: _num(m.get("idle_cpu_percent_of_core"), 2),
        "with --idle-seconds S: the server processes' CPU over S idle seconds (the keepalive's "
        "pings and pongs and, on Redis, the nodes' heartbeats), divided by S",
    ),
    (
        "idle Redis CPU % of one core",
        lambda m: _num(m.get("idle_redis_cpu_percent_of_core"), 2),
        "with --idle-seconds S and a Redis whose PID the run knows (--spawn-redis, "
        "--redis-pid): redis-server's CPU over those S seconds (the nodes' heartbeats), "
        "divided by S",
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


def _seconds(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda m: _num(m[key], 2)


_RECOVERY_ROWS: list[Row] = [
    (
        "clients recovered / clients",
        lambda m: f"{m['recovered']:,} / {m['clients']:,}",
        "clients whose rejoin with since got recovered: true after exactly the missing offsets, "
        "in order, ending at the room's position / clients (every one must be recovered)",
    ),
    (
        "not recovered / wrong replay / failed",
        lambda m: f"{m['not_recovered']} / {m['wrong']} / {m['failed']}",
        "ok without recovered: true / recovered: true but the messages before the ok were not "
        "exactly the missing offsets (or the ok not at the room's position) / could not "
        "reconnect or rejoin; any of them fails the run",
    ),
    (
        "replayed messages (got / expected)",
        lambda m: f"{m['replayed']:,} / {m['expected_replayed']:,}",
        "messages received before the rejoins' ok / clients x --gap",
    ),
    (
        "kill to last recovered ok s",
        _seconds("recovery_s"),
        "from the SIGKILL of the clients' node to the last recovered ok (the recovery storm)",
    ),
    (
        "kill to recovered ok ms p50 / p99 / p99.9 / max",
        _latency("time_to_recovered_us"),
        "per recovered client, from the SIGKILL to its ok: " + _LATENCY_HELP,
    ),
    (
        "gap said s (kill to its last ok)",
        _seconds("gap_said_s"),
        "the publisher's --gap messages per room through the surviving node, from the kill "
        "to the last ok; the clients rejoin after it",
    ),
    (
        "rejoin s (first rejoin to last ok)",
        _seconds("rejoin_s"),
        "from the first client's reconnection to the last recovered ok",
    ),
    (
        "surviving nodes CPU s",
        _seconds("server_cpu_s"),
        "CPU of the surviving nodes from the kill to the last ok",
    ),
    (
        "surviving nodes CPU µs per recovery",
        lambda m: _num(m["server_cpu_us_per_recovery"], 1),
        "that CPU divided by the recovered clients",
    ),
    (
        "Redis CPU s",
        _seconds("redis_cpu_s"),
        "CPU of redis-server (--spawn-redis, or --redis-pid) over the same span",
    ),
    (
        "setup s (connect + join)",
        lambda m: _num(m.get("setup_s"), 2),
        "from the first connection attempt to the last join ok, before the kill",
    ),
]

_PRESENCE_ROWS: list[Row] = [
    (
        "right / wrong / error replies",
        lambda m: f"{m['right']:,} / {m['wrong']:,} / {sum(m['errors'].values()):,}",
        "presence replies that told the whole room (count = every member and the asker, "
        "users 0, members listed up to 1,000 with truncated beyond) / replies that did not / "
        "error replies; any wrong or error reply fails the run",
    ),
    (
        "members in the room",
        lambda m: f"{m['members']:,}",
        "--members plus the asker",
    ),
    (
        "reply ms p50 / p99 / p99.9 / max",
        _latency("reply_us"),
        "per request, from its send to its reply's arrival at the asker, while the room is "
        "quiet: " + _LATENCY_HELP,
    ),
    (
        "requests/s (in flight)",
        lambda m: f"{_num(m['requests_per_s'])} ({m['in_flight']})",
        "replies divided by the window from the first request to the last reply / "
        "--in-flight requests at a time",
    ),
    (
        "server CPU µs per request",
        lambda m: _num(m["server_cpu_us_per_request"], 1),
        "CPU of the server processes over that window, divided by the replies",
    ),
    (
        "Redis CPU µs per request",
        lambda m: _num(m["redis_cpu_us_per_request"], 1),
        "CPU of redis-server (--spawn-redis, or --redis-pid) over that window, divided by the "
        "replies",
    ),
    (
        "setup s (connect + join)",
        lambda m: _num(m.get("setup_s"), 2),
        "from the first member's connection attempt to the last join ok (before the asking)",
    ),
]

_ROWS = {
    "fanout": _DELIVERY_ROWS,
    "chat": _DELIVERY_ROWS,
    "idle": _IDLE_ROWS,
    "connect": _CONNECT_ROWS,
    "recovery": _RECOVERY_ROWS,
    "presence": _PRESENCE_ROWS,
}

_COMMON_HELP: list[tuple[str, str]] = [
    (
        "client workers CPU %",
        "each load-generator worker's CPU time over the window; above 60 % the run warns, "
        "since the load generator may then limit the result",
    ),
]


def column_help(scenario: str) -> str:
    """What every row of ``scenario``'s table means, for ``--help``."""
    table = _ROWS[scenario] + (_REDIS_ROWS if scenario in ("fanout", "chat") else [])
    rows = [(label, meaning) for label, _, meaning in table] + _COMMON_HELP
    width = max(len(label) for label, _ in rows)
    lines = ["what the table reports:"]
    for label, meaning in rows:
        lines.extend(_wrap(f"  {label.ljust(width)}  ", meaning))
    lines.append(
        "  with --compare, one sentence per headline number says how roomcast compares "
        "with the baseline"
    )
    if scenario in ("fanout", "chat"):
        lines.append(shard_help())
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
        case "recovery":
            shape = (
                f"{p['connections']:,} clients in {p['rooms']:,} room"
                f"{'s' if p['rooms'] > 1 else ''} rejoining another node after a SIGKILL, "
                f"{p['gap']:,} messages missed per room"
            )
        case "presence":
            shape = (
                f"{p['members']:,} members in one quiet room, {p['requests']:,} presence "
                f"requests, {p['in_flight']} in flight"
            )
        case _:
            shape = f"{p['connections']:,} connections in rooms of {p['room_size']}"
    if scenario in ("fanout", "chat"):
        shape += f", {p['body_size']}-byte bodies"
    return f"broker bench {scenario}: {shape}"


def _header(result: dict[str, Any], workers: int = 1) -> str:
    nodes = result["nodes"]
    shape = f"{nodes} node{'s' if nodes > 1 else ''}"
    if workers > 1 and result["target"] == "roomcast":
        shape += f" x {workers} workers"
    return f"{result['target']} ({result['backend']}, {shape})"


def _workers(result: dict[str, Any]) -> str:
    return ", ".join(f"{w['cpu_percent']:.0f}%" for w in result["workers"]) or "-"


def format_table(record: dict[str, Any]) -> str:
    """The record as a table: one column per target, a ratio column when comparing."""
    results = record["results"]
    rows: list[Row] = list(_ROWS[record["scenario"]])
    if record["scenario"] in ("fanout", "chat") and any(
        r["metrics"].get("redis_cpu_s") is not None for r in results
    ):
        rows += _REDIS_ROWS
    lines = [_title(record), ""]
    workers = record["params"].get("workers", 1)
    header = ["", *(_header(r, workers) for r in results)]
    body: list[list[str]] = []
    for label, cell, _ in rows:
        body.append([label, *(_safe(cell, r["metrics"]) for r in results)])
    body.append(["client workers CPU %", *(_workers(r) for r in results)])
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    for row in [header, *body]:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    for result in results:
        lines.extend(_shard_lines(result))
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


_SHARD_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], str], str]] = [
    ("shard", lambda s: str(s["shard"]), "the shard (a master and its replica)"),
    ("slots", lambda s: s["slots"], "the slot ranges its master serves"),
    ("rooms", lambda s: f"{s['rooms']:,}", "rooms whose hash tag's slot it owns"),
    ("says", lambda s: f"{s['says']:,}", "messages said in those rooms in the window"),
    (
        "publishes",
        lambda s: f"{s['publishes']:,}",
        "SPUBLISH calls on its master (INFO commandstats; inside the publish script too): "
        "one per say of its rooms, plus the nodes' canaries",
    ),
    (
        "others",
        lambda s: f"{s['others']:,}",
        "publishes - says: the canaries (about one per node a second); more would be another "
        "shard's rooms, fewer (negative) says lost",
    ),
    (
        "scripts",
        lambda s: f"{s['evalsha_calls']:,}",
        "EVALSHA calls on its master: the publish scripts (history on), history reads, presence",
    ),
    (
        "script µs/call",
        lambda s: _num(s["script_us_per_call"], 2),
        "the usec INFO commandstats counts per EVALSHA (the script's execution only)",
    ),
    (
        "master CPU s",
        lambda s: _num(s["master_cpu_s"], 2),
        "the master process's user + system CPU (/proc) over the window",
    ),
    (
        "master CPU µs/publish",
        # A shard without says publishes only canaries: its idle CPU per
        # canary would read as a cost per publish.
        lambda s: _num(s["master_cpu_us_per_publish"], 2) if s["says"] else "-",
        "that CPU per publish, for a shard whose rooms said something: the script, the I/O, "
        "sending to every subscribed node, feeding its replica",
    ),
    (
        "replica CPU s",
        lambda s: _num(s["replica_cpu_s"], 2),
        "its replicas' CPU over the window, apart (replication only)",
    ),
]
"""The per-shard table of a run on ``--spawn-redis-cluster``."""


def shard_help() -> str:
    """What the per-shard table's columns mean, for ``--help``."""
    lines = ["with --spawn-redis-cluster, a table per shard follows:"]
    width = max(len(label) for label, _, _ in _SHARD_COLUMNS)
    for label, _, meaning in _SHARD_COLUMNS:
        lines.extend(_wrap(f"  {label.ljust(width)}  ", meaning))
    return "\n".join(lines)


def _shard_lines(result: dict[str, Any]) -> list[str]:
    shards = result["metrics"].get("shards")
    if not shards:
        return []
    rows = [[label for label, _, _ in _SHARD_COLUMNS]]
    rows += [[_safe(cell, shard) for _, cell, _ in _SHARD_COLUMNS] for shard in shards]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["", f"per shard ({result['target']}, Redis Cluster):"]
    for row in rows:
        lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return lines


def _safe(cell: Callable[[dict[str, Any]], str], metrics: dict[str, Any]) -> str:
    # A run that stopped early (failed joins) has no delivery metrics.
    try:
        return cell(metrics)
    except (KeyError, TypeError):
        return "-"
