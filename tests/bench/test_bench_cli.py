"""``broker bench`` end to end, at small sizes: every expected delivery arrives
exactly once and in order, and the JSON record has its documented keys.

Smoke tests of correctness, never of speed: no number is compared with a
threshold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import REPO, RedisServer

RECORD_KEYS = {
    "tool",
    "record_version",
    "scenario",
    "started_at",
    "elapsed_s",
    "machine",
    "params",
    "results",
    "comparison",
    "ok",
}
MACHINE_KEYS = {"cores", "cpu_model", "os", "python", "python_implementation", "packages", "uvloop"}
RESULT_KEYS = {
    "target",
    "backend",
    "nodes",
    "urls",
    "spawned",
    "server_pids",
    "redis_pid",
    "ok",
    "problems",
    "warnings",
    "metrics",
    "workers",
}
DELIVERY_KEYS = {
    "expected_deliveries",
    "deliveries",
    "missing",
    "duplicates",
    "out_of_order",
    "unexpected",
    "offset_gaps",
    "offset_backwards",
    "epoch_changes",
    "joins_with_position",
    "errors",
    "closed_connections",
    "says",
    "acks",
    "window_s",
    "deliveries_per_s",
    "says_per_s",
    "latency_us",
    "offered_says_per_s",
    "offered_deliveries_per_s",
    "rate_held",
    "max_publisher_lag_ms",
    "server_cpu_s",
    "server_cpu_us_per_delivery",
    "redis_cpu_s",
    "redis_cpu_us_per_say",
    "total_cpu_us_per_delivery",
    "setup_s",
    "connections_per_s",
    "source_addresses",
}
RECOVERY_KEYS = {
    "clients",
    "rooms",
    "gap",
    "dropped",
    "recovered",
    "not_recovered",
    "wrong",
    "failed",
    "replayed",
    "expected_replayed",
    "recovery_s",
    "time_to_recovered_us",
    "gap_said_s",
    "rejoin_s",
    "server_cpu_s",
    "server_cpu_us_per_recovery",
    "redis_cpu_s",
    "setup_s",
}
ANOMALIES = [
    "missing",
    "duplicates",
    "out_of_order",
    "unexpected",
    "offset_gaps",
    "offset_backwards",
    "epoch_changes",
]
LATENCY_KEYS = {"count", "p50", "p99", "p99_9", "max", "mean"}
WORKER_KEYS = {"pid", "role", "connections", "cpu_percent"}


def bench(*args: str, expect_code: int = 0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m broker bench ...`` and require its exit code."""
    result = subprocess.run(
        [sys.executable, "-m", "broker", "bench", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=90,
    )
    assert result.returncode == expect_code, result.stderr
    return result


def record_of(*args: str) -> dict[str, Any]:
    """The JSON record of a successful run (the table goes to stderr)."""
    result = bench(*args, "--json", "--timeout", "60")
    record: dict[str, Any] = json.loads(result.stdout)
    assert "result: OK" in result.stderr
    return record


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def assert_exact_deliveries(metrics: dict[str, Any], expected: int) -> None:
    assert metrics["expected_deliveries"] == expected
    assert metrics["deliveries"] == expected
    assert [metrics[k] for k in ANOMALIES] == [0] * len(ANOMALIES)
    assert metrics["errors"] == {}
    assert metrics["closed_connections"] == 0
    assert metrics["latency_us"]["count"] == expected


def assert_record_shape(record: dict[str, Any], scenario: str) -> None:
    assert set(record) == RECORD_KEYS
    assert record["tool"] == "broker bench"
    assert record["scenario"] == scenario
    assert record["ok"] is True
    assert set(record["machine"]) == MACHINE_KEYS
    assert record["machine"]["cores"] == os.cpu_count()
    assert {"websockets", "msgspec", "redis", "uvloop"} <= set(record["machine"]["packages"])
    for result in record["results"]:
        assert set(result) == RESULT_KEYS
        assert result["ok"] is True
        assert result["problems"] == []
        assert all(set(w) == WORKER_KEYS for w in result["workers"])
        # Every process the run started is gone when it returns.
        assert not any(alive(pid) for pid in result["server_pids"])
        assert not any(alive(w["pid"]) for w in result["workers"])


def test_fanout_delivers_every_message_to_every_member_once_in_order() -> None:
    record = record_of("fanout", "--spawn", "--members", "20", "--messages", "50")

    assert_record_shape(record, "fanout")
    (result,) = record["results"]
    metrics = result["metrics"]
    assert set(metrics) == DELIVERY_KEYS
    assert set(metrics["latency_us"]) == LATENCY_KEYS
    assert_exact_deliveries(metrics, 20 * 50)
    assert metrics["says"] == metrics["acks"] == 50
    assert metrics["server_cpu_us_per_delivery"] is not None
    assert metrics["rate_held"] is None
    assert (result["target"], result["backend"], result["spawned"]) == ("roomcast", "memory", True)
    assert [w["role"] for w in result["workers"]] == ["publisher", "members"]
    params = record["params"]
    assert (params["members"], params["messages"], params["body_size"]) == (20, 50, 200)
    assert (params["window"], params["clients_procs"]) == (64, 1)


def test_fanout_checks_the_offsets_of_a_room_with_history() -> None:
    record = record_of(
        "fanout", "--spawn", "--members", "20", "--messages", "50", "--history-size", "100"
    )

    metrics = record["results"][0]["metrics"]
    assert_exact_deliveries(metrics, 20 * 50)
    # Every join (the publisher's too) got the room's position: offsets were checked.
    assert metrics["joins_with_position"] == 21
    assert record["params"]["history_size"] == 100


def test_fanout_with_history_off_has_no_positions() -> None:
    record = record_of(
        "fanout", "--spawn", "--members", "10", "--messages", "20", "--history-size", "0"
    )

    metrics = record["results"][0]["metrics"]
    assert_exact_deliveries(metrics, 10 * 20)
    assert metrics["joins_with_position"] == 0


def test_history_off_through_server_args_has_no_positions() -> None:
    record = record_of(
        "fanout", "--spawn", "--members", "10", "--messages", "20",
        "--server-args", "--history-size 0",
    )  # fmt: skip

    assert record["results"][0]["metrics"]["joins_with_position"] == 0


def test_chat_between_members_that_say_checks_offsets_with_their_own_says() -> None:
    # Each member receives the others' messages and learns its own offsets from
    # its oks: together they must be every offset of the room.
    record = record_of(
        "chat", "--spawn", "--rooms", "2", "--room-size", "4", "--messages", "10",
        "--say-rate", "100",
    )  # fmt: skip

    metrics = record["results"][0]["metrics"]
    assert_exact_deliveries(metrics, 8 * 10 * 3)
    assert metrics["joins_with_position"] == 8


def test_fanout_at_an_offered_rate_says_whether_it_held() -> None:
    record = record_of("fanout", "--spawn", "--members", "10", "--messages", "20", "--rate", "2000")

    metrics = record["results"][0]["metrics"]
    assert_exact_deliveries(metrics, 10 * 20)
    assert metrics["offered_deliveries_per_s"] == 2000
    assert metrics["offered_says_per_s"] == 200
    assert isinstance(metrics["rate_held"], bool)


def test_chat_checks_every_members_messages_across_workers() -> None:
    record = record_of(
        "chat", "--spawn", "--rooms", "4", "--room-size", "3", "--messages", "5",
        "--say-rate", "50", "--clients-procs", "2",
    )  # fmt: skip

    assert_record_shape(record, "chat")
    result = record["results"][0]
    # Each of 12 members says 5 messages, heard by the 2 others in its room.
    assert_exact_deliveries(result["metrics"], 12 * 5 * 2)
    assert result["metrics"]["says"] == 60
    assert [w["connections"] for w in result["workers"]] == [6, 6]


def test_idle_reports_server_memory_per_connection() -> None:
    record = record_of("idle", "--spawn", "--connections", "60", "--room-size", "6")

    assert_record_shape(record, "idle")
    metrics = record["results"][0]["metrics"]
    assert (metrics["connections"], metrics["rooms"]) == (60, 10)
    assert metrics["rss_before_bytes"] > 0
    assert metrics["rss_after_bytes"] > 0
    assert isinstance(metrics["rss_per_connection_bytes"], float)


def test_connect_reports_the_storm() -> None:
    record = record_of("connect", "--spawn", "--connections", "60", "--clients-procs", "2")

    assert_record_shape(record, "connect")
    metrics = record["results"][0]["metrics"]
    assert (metrics["joined"], metrics["failed"]) == (60, 0)
    assert metrics["connections_per_s"] > 0
    assert metrics["time_to_joined_us"]["count"] == 60
    assert metrics["server_cpu_us_per_connection"] is not None


def test_compare_runs_the_textbook_baseline_with_the_same_load() -> None:
    record = record_of(
        "fanout", "--spawn", "--compare", "textbook", "--members", "10", "--messages", "20"
    )

    assert_record_shape(record, "fanout")
    ours, textbook = record["results"]
    assert (ours["target"], textbook["target"]) == ("roomcast", "textbook")
    assert_exact_deliveries(ours["metrics"], 200)
    assert_exact_deliveries(textbook["metrics"], 200)
    comparison = record["comparison"]
    assert comparison["baseline"] == "textbook"
    for key in ("deliveries_per_s", "server_cpu_us_per_delivery", "latency_us.p99"):
        assert set(comparison[key]) == {"roomcast", "textbook", "ratio"}


@pytest.mark.redis
def test_two_nodes_on_redis_deliver_across_nodes(shared_redis: RedisServer) -> None:
    record = record_of(
        "fanout", "--redis", shared_redis.url, "--nodes", "2", "--members", "10",
        "--messages", "30",
    )  # fmt: skip

    assert_record_shape(record, "fanout")
    result = record["results"][0]
    assert (result["backend"], result["nodes"], len(result["server_pids"])) == ("redis", 2, 2)
    assert_exact_deliveries(result["metrics"], 10 * 30)


@pytest.mark.redis
def test_a_spawned_redis_reports_its_cpu_per_say() -> None:
    record = record_of(
        "chat", "--spawn-redis", "--nodes", "2", "--rooms", "2", "--room-size", "3",
        "--messages", "5", "--say-rate", "50",
    )  # fmt: skip

    result = record["results"][0]
    metrics = result["metrics"]
    assert_exact_deliveries(metrics, 6 * 5 * 2)
    assert isinstance(result["redis_pid"], int)
    assert not alive(result["redis_pid"])
    for key in ("redis_cpu_s", "redis_cpu_us_per_say", "total_cpu_us_per_delivery"):
        assert isinstance(metrics[key], float), key


@pytest.mark.redis
def test_a_given_redis_pid_is_measured(shared_redis: RedisServer) -> None:
    assert shared_redis.process is not None
    record = record_of(
        "fanout", "--redis", shared_redis.url, "--redis-pid", str(shared_redis.process.pid),
        "--members", "5", "--messages", "20",
    )  # fmt: skip

    result = record["results"][0]
    assert result["redis_pid"] == shared_redis.process.pid
    assert isinstance(result["metrics"]["redis_cpu_us_per_say"], float)


@pytest.mark.redis
def test_recovery_recovers_every_client_of_the_killed_node() -> None:
    record = record_of(
        "recovery", "--spawn-redis", "--nodes", "2", "--connections", "20", "--gap", "5",
        "--clients-procs", "2",
    )  # fmt: skip

    assert_record_shape(record, "recovery")
    result = record["results"][0]
    metrics = result["metrics"]
    assert set(metrics) == RECOVERY_KEYS
    assert (metrics["clients"], metrics["rooms"], metrics["gap"]) == (20, 1, 5)
    assert (metrics["dropped"], metrics["recovered"]) == (20, 20)
    assert (metrics["not_recovered"], metrics["wrong"], metrics["failed"]) == (0, 0, 0)
    assert metrics["replayed"] == metrics["expected_replayed"] == 20 * 5
    assert metrics["time_to_recovered_us"]["count"] == 20
    assert metrics["recovery_s"] is not None
    assert [w["connections"] for w in result["workers"]] == [10, 10]


@pytest.mark.redis
def test_recovery_over_several_rooms_replays_each_rooms_gap() -> None:
    record = record_of(
        "recovery", "--spawn-redis", "--nodes", "2", "--connections", "12", "--rooms", "3",
        "--gap", "4",
    )  # fmt: skip

    metrics = record["results"][0]["metrics"]
    assert (metrics["recovered"], metrics["replayed"]) == (12, 12 * 4)


@pytest.mark.redis
def test_recovery_beyond_the_history_size_recovers_nobody() -> None:
    # 5 messages missed, 3 kept: the contract's "recovered": false.
    result = bench(
        "recovery", "--spawn-redis", "--nodes", "2", "--connections", "6", "--gap", "5",
        "--history-size", "3", "--json", "--timeout", "60",
        expect_code=1,
    )  # fmt: skip

    metrics = json.loads(result.stdout)["results"][0]["metrics"]
    assert (metrics["recovered"], metrics["not_recovered"], metrics["replayed"]) == (0, 6, 0)
    assert "not recovered: 6 clients" in result.stderr


@pytest.mark.redis
def test_a_spawned_redis_cluster_reports_what_each_shard_served() -> None:
    record = record_of(
        "chat", "--spawn-redis-cluster", "--cluster-masters", "4", "--nodes", "2",
        "--rooms", "8", "--room-size", "3", "--messages", "5", "--say-rate", "50",
    )  # fmt: skip

    assert_record_shape(record, "chat")
    result = record["results"][0]
    metrics = result["metrics"]
    assert (result["backend"], result["nodes"]) == ("redis-cluster", 2)
    assert_exact_deliveries(metrics, 24 * 5 * 2)
    shards = metrics["shards"]
    assert len(shards) == 4
    assert sum(s["rooms"] for s in shards) == 8
    assert sum(s["says"] for s in shards) == metrics["says"] == 24 * 5
    # Each say published once, on its room's shard (the rest are canaries);
    # history on: each through the publish script.
    assert all(s["publishes"] - s["says"] == s["others"] >= 0 for s in shards)
    assert all(s["evalsha_calls"] >= s["says"] for s in shards)
    assert not any(w.startswith("shard ") for w in result["warnings"])
    redis_pids = [pid for s in shards for pid in (s["master_pid"], *s["replica_pids"])]
    assert len(set(redis_pids)) == 8
    assert not any(alive(pid) for pid in redis_pids)
    for key in ("redis_cpu_s", "redis_cpu_us_per_say", "total_cpu_us_per_delivery"):
        assert isinstance(metrics[key], float), key


@pytest.mark.redis
def test_a_spawned_redis_cluster_table_has_a_row_per_shard() -> None:
    result = bench(
        "fanout", "--spawn-redis-cluster", "--members", "5", "--messages", "20",
        "--timeout", "60",
    )  # fmt: skip

    lines = result.stdout.splitlines()
    start = lines.index("per shard (roomcast, Redis Cluster):")
    assert [line.split()[0] for line in lines[start + 2 : start + 5]] == ["0", "1", "2"]
    assert "result: OK" in result.stdout


def test_the_timeout_aborts_the_run_and_ends_every_process() -> None:
    marker = f"bench-timeout-{uuid.uuid4().hex[:8]}"
    # 1,000 messages offered at 10 says/s would take 100 s.
    result = bench(
        "fanout", "--spawn", "--members", "5", "--messages", "1000", "--rate", "50",
        "--timeout", "3", "--server-args", f"--node-id {marker}",
        expect_code=3,
    )  # fmt: skip

    assert "aborted after --timeout 3 s" in result.stderr
    assert "measuring" in result.stderr
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            assert marker.encode() not in cmdline or not alive(int(proc.name))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fanout", "--compare", "textbook"], "--compare needs --spawn"),
        (["fanout", "--spawn", "--nodes", "2"], "--nodes > 1 needs"),
        (["fanout", "--spawn", "--url", "ws://127.0.0.1:1/ws"], "either --url or --spawn"),
        (["fanout", "--history-size", "0"], "--history-size sets spawned nodes"),
        (["recovery", "--spawn-redis"], "recovery kills a node it started"),
        (["recovery", "--url", "ws://127.0.0.1:1/ws"], "recovery kills a node it started"),
        (["recovery", "--spawn-redis", "--nodes", "2", "--compare", "textbook"], "no baseline"),
        (["chat", "--spawn-redis", "--spawn-redis-cluster"], "give one of --redis URL"),
        (["chat", "--redis", "redis://127.0.0.1:1/0", "--spawn-redis-cluster"], "give one of"),
        (["chat", "--spawn-redis", "--cluster-masters", "4"], "--cluster-masters sizes"),
        (["chat", "--spawn-redis-cluster", "--cluster-masters", "2"], "at least 3 masters"),
    ],
)
def test_contradictory_options_are_usage_errors(args: list[str], message: str) -> None:
    result = bench(*args, expect_code=2)

    assert message in result.stderr


def test_an_unreachable_broker_fails_clearly() -> None:
    result = bench(
        "connect", "--url", "ws://127.0.0.1:1/ws", "--connections", "3", "--timeout", "20",
        expect_code=1,
    )  # fmt: skip

    assert "3 connections failed" in result.stdout
