"""The table a person reads: sentences for ratios, warnings, and help that
explains every row."""

from __future__ import annotations

from typing import Any

import pytest

from broker.bench.params import SCENARIOS
from broker.bench.report import column_help, format_table

LATENCY = {"count": 10, "p50": 1000, "p99": 2000, "p99_9": 2000, "max": 2500, "mean": 1100.0}


def delivery_metrics(cpu_per_delivery: float, per_s: float) -> dict[str, Any]:
    return {
        "expected_deliveries": 10, "deliveries": 10, "missing": 0, "duplicates": 0,
        "out_of_order": 0, "unexpected": 0, "errors": {}, "closed_connections": 0,
        "says": 5, "acks": 5, "window_s": 0.2, "deliveries_per_s": per_s, "says_per_s": 25.0,
        "latency_us": LATENCY, "offered_says_per_s": None, "offered_deliveries_per_s": None,
        "rate_held": None, "max_publisher_lag_ms": 0.0, "server_cpu_s": 0.01,
        "server_cpu_us_per_delivery": cpu_per_delivery, "setup_s": 0.1,
        "offset_gaps": 0, "offset_backwards": 0, "epoch_changes": 0, "joins_with_position": 2,
        "redis_cpu_s": 0.02, "redis_cpu_us_per_say": 4000.0, "total_cpu_us_per_delivery": 3.0,
    }  # fmt: skip


def recovery_record(**metrics: Any) -> dict[str, Any]:
    values = {
        "clients": 20, "rooms": 1, "gap": 5, "dropped": 20, "recovered": 20,
        "not_recovered": 0, "wrong": 0, "failed": 0, "replayed": 100,
        "expected_replayed": 100, "recovery_s": 1.234, "time_to_recovered_us": LATENCY,
        "gap_said_s": 0.05, "rejoin_s": 1.1, "server_cpu_s": 0.5,
        "server_cpu_us_per_recovery": 25000.0, "redis_cpu_s": 0.1, "setup_s": 0.4,
    } | metrics  # fmt: skip
    return {
        "scenario": "recovery",
        "params": {"connections": 20, "rooms": 1, "gap": 5},
        "results": [result("roomcast", values, [])],
        "comparison": None,
        "ok": True,
    }


def result(target: str, metrics: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    return {
        "target": target, "backend": "memory", "nodes": 1, "urls": [], "spawned": True,
        "server_pids": [], "ok": True, "problems": [], "warnings": warnings,
        "metrics": metrics, "workers": [{"pid": 1, "role": "members", "connections": 2,
                                         "cpu_percent": 12.0}],
    }  # fmt: skip


def compared_record() -> dict[str, Any]:
    params = {"members": 2, "messages": 5, "window": 64, "rate": None, "body_size": 200}
    return {
        "scenario": "fanout",
        "params": params,
        "results": [
            result("roomcast", delivery_metrics(0.28, 1000.0), ["the window was short"]),
            result("textbook", delivery_metrics(10.1, 100.0), []),
        ],
        "comparison": {
            "baseline": "textbook",
            "deliveries_per_s": {"roomcast": 1000.0, "textbook": 100.0, "ratio": 10.0},
            "server_cpu_us_per_delivery": {"roomcast": 0.28, "textbook": 10.1, "ratio": 0.028},
        },
        "ok": True,
    }


def test_a_comparison_is_told_in_sentences_not_bare_ratios() -> None:
    table = format_table(compared_record())

    assert "roomcast delivered 10x more messages per second than textbook" in table
    assert "roomcast used 36x less server CPU per delivery than textbook" in table
    assert "ratio" not in table


def test_warnings_are_printed_under_the_table_with_their_target() -> None:
    table = format_table(compared_record())

    assert "warning (roomcast): the window was short" in table
    assert table.endswith("result: OK")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_help_explains_every_row_of_the_scenarios_table(scenario: str) -> None:
    record = compared_record() | {"scenario": scenario, "comparison": None}
    record["params"] |= {"rooms": 1, "room_size": 2, "say_rate": 1.0, "connections": 2, "gap": 5}
    record["params"] |= {"requests": 5, "in_flight": 1}
    labels = [line.split("  ")[0] for line in format_table(record).splitlines()[3:-2]]
    labels = [label for label in labels if label and not label.startswith("warning")]

    explained = column_help(scenario)

    assert labels
    for label in labels:
        assert f"  {label}  " in explained, label


def test_help_says_what_says_per_second_counts() -> None:
    assert "says/s" in column_help("chat")
    assert "say requests all publishers sent per second" in column_help("fanout")


def test_help_explains_the_recovery_rows() -> None:
    record = recovery_record()
    labels = [line.split("  ")[0] for line in format_table(record).splitlines()[3:-2]]

    explained = column_help("recovery")

    assert len([label for label in labels if label]) >= 10
    for label in filter(None, labels):
        assert f"  {label}  " in explained, label


def test_the_recovery_table_tells_recovered_clients_and_the_time_to_the_last() -> None:
    table = format_table(recovery_record(recovered=19, failed=1))

    assert "rejoining another node after a SIGKILL, 5 messages missed per room" in table
    assert "clients recovered / clients" in table
    assert "19 / 20" in table
    assert "0 / 0 / 1" in table
    assert "1.23" in table


def test_redis_cpu_rows_appear_only_when_redis_was_measured() -> None:
    measured = compared_record()
    unmeasured = compared_record()
    for r in unmeasured["results"]:
        r["metrics"] = r["metrics"] | {"redis_cpu_s": None}

    assert "Redis CPU µs per say" in format_table(measured)
    assert "brokers + Redis CPU µs per delivery" in format_table(measured)
    assert "Redis CPU µs per say" not in format_table(unmeasured)


def test_help_names_the_redis_and_offset_columns() -> None:
    explained = column_help("chat")

    assert "Redis CPU µs per say" in explained
    assert "brokers + Redis CPU µs per delivery" in explained
    assert "offset gaps / backwards / epoch changes" in explained
