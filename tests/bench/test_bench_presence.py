"""``broker bench presence`` end to end at a small size, its plan and its table.

Smoke tests of correctness, never of speed: every reply must tell the whole
room, and no reply time is compared with a threshold.
"""

from __future__ import annotations

from typing import Any

import pytest

from broker.bench.params import BenchParams
from broker.bench.plans import PRESENCE_ROOM, make_plan
from broker.bench.report import column_help, format_table
from tests.bench.test_bench_cli import alive, assert_record_shape, bench, record_of

MEMBERS, REQUESTS = 50, 20
LATENCY_KEYS = {"count", "p50", "p99", "p99_9", "max", "mean"}
PRESENCE_KEYS = {
    "members",
    "requests",
    "in_flight",
    "replies",
    "right",
    "wrong",
    "errors",
    "reply_us",
    "window_s",
    "requests_per_s",
    "server_cpu_s",
    "server_cpu_us_per_request",
    "redis_cpu_s",
    "redis_cpu_us_per_request",
    "setup_s",
}
SIZE = ("--members", str(MEMBERS), "--requests", str(REQUESTS))


def assert_every_reply_told_the_whole_room(metrics: dict[str, Any]) -> None:
    assert set(metrics) == PRESENCE_KEYS
    assert metrics["members"] == MEMBERS + 1  # the asker is in the room too
    assert (metrics["replies"], metrics["right"], metrics["wrong"]) == (REQUESTS, REQUESTS, 0)
    assert metrics["errors"] == {}
    assert set(metrics["reply_us"]) == LATENCY_KEYS
    assert metrics["reply_us"]["count"] == REQUESTS


def test_presence_on_one_node_tells_every_member_in_every_reply() -> None:
    record = record_of("presence", "--spawn", *SIZE, "--in-flight", "4")

    assert_record_shape(record, "presence")
    (result,) = record["results"]
    assert_every_reply_told_the_whole_room(result["metrics"])
    assert result["metrics"]["in_flight"] == 4
    assert result["metrics"]["redis_cpu_us_per_request"] is None
    assert [w["role"] for w in result["workers"]] == ["members"]


@pytest.mark.redis
def test_presence_over_two_nodes_on_redis_tells_every_member_and_measures_redis() -> None:
    record = record_of("presence", "--spawn-redis", "--nodes", "2", *SIZE, "--clients-procs", "2")

    assert_record_shape(record, "presence")
    (result,) = record["results"]
    metrics = result["metrics"]
    assert_every_reply_told_the_whole_room(metrics)
    assert (result["backend"], result["nodes"]) == ("redis", 2)
    assert isinstance(result["redis_pid"], int) and not alive(result["redis_pid"])
    assert isinstance(metrics["redis_cpu_us_per_request"], float)
    assert sum(w["connections"] for w in result["workers"]) == MEMBERS


def test_presence_has_no_baseline_to_compare_with() -> None:
    result = bench("presence", "--spawn", "--compare", "textbook", expect_code=2)

    assert "no baseline for presence" in result.stderr


def test_the_plan_spreads_one_room_over_the_nodes_with_one_warm_up_speaker() -> None:
    params = BenchParams(scenario="presence", members=7, clients_procs=2)

    plan = make_plan(params, ("ws://a/ws", "ws://b/ws"))

    conns = [conn for setup in plan.setups for conn in setup.conns]
    assert len(conns) == 7
    assert {conn.room for conn in conns} == {PRESENCE_ROOM}
    assert sorted(conn.url for conn in conns) == ["ws://a/ws"] * 4 + ["ws://b/ws"] * 3
    assert [conn.pub for conn in conns if conn.pub is not None] == [0]
    assert all(setup.messages == 0 for setup in plan.setups)


def presence_record(**metrics: Any) -> dict[str, Any]:
    latency = {"count": 20, "p50": 900, "p99": 4200, "p99_9": 4200, "max": 4300, "mean": 1000.0}
    values = {
        "members": 51, "requests": 20, "in_flight": 1, "replies": 20, "right": 20, "wrong": 0,
        "errors": {}, "reply_us": latency, "window_s": 0.02, "requests_per_s": 1000.0,
        "server_cpu_s": 0.01, "server_cpu_us_per_request": 500.0, "redis_cpu_s": 0.0,
        "redis_cpu_us_per_request": 0.0, "setup_s": 0.03,
    } | metrics  # fmt: skip
    result = {
        "target": "roomcast", "backend": "redis", "nodes": 2, "urls": [], "spawned": True,
        "server_pids": [], "ok": True, "problems": [], "warnings": [], "metrics": values,
        "workers": [{"pid": 1, "role": "members", "connections": 50, "cpu_percent": 12.0}],
    }  # fmt: skip
    return {
        "scenario": "presence",
        "params": {"members": 50, "requests": 20, "in_flight": 1},
        "results": [result],
        "comparison": None,
        "ok": True,
    }


def test_the_presence_table_tells_right_replies_and_the_reply_time() -> None:
    table = format_table(presence_record(right=19, errors={"unavailable": 1}))

    assert "50 members in one quiet room, 20 presence requests, 1 in flight" in table
    assert "19 / 0 / 1" in table
    assert "0.90 / 4.20 / 4.20 / 4.30" in table


def test_help_explains_every_presence_row() -> None:
    labels = [line.split("  ")[0] for line in format_table(presence_record()).splitlines()[3:-2]]

    explained = column_help("presence")

    assert len([label for label in labels if label]) >= 7
    for label in filter(None, labels):
        assert f"  {label}  " in explained, label
