"""What ``broker bench --spawn-redis-cluster`` reports per shard: each room's
says assigned to the shard that owns the room's slot, and what every master
served in the window read from ``INFO commandstats`` (a real cluster)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from redis.cluster import RedisCluster

from broker.bench.params import BenchParams
from broker.bench.plans import make_plan
from broker.bench.redis_cluster import LocalRedisCluster, parse_commandstats
from broker.bench.report import format_table
from broker.bench.shards import ShardProbe, room_slot, says_per_room, shard_warnings
from broker.bench.targets import Target

NAMESPACE = "bench-shards"
# A publish script like the nodes' in shape: one EVALSHA, one SPUBLISH inside.
SCRIPT = "return redis.call('spublish', KEYS[1], ARGV[1])"


def chat_plan(rooms: int = 12, room_size: int = 2, messages: int = 3) -> Any:
    params = BenchParams(scenario="chat", rooms=rooms, room_size=room_size, messages=messages)
    return make_plan(params, ("ws://127.0.0.1:1/ws",))


def shard_record(shard: int, says: int, publishes: int) -> dict[str, Any]:
    return {
        "shard": shard, "slots": "0-5460", "master_port": 1, "master_pid": 2,
        "replica_pids": [3], "rooms": 4, "says": says, "publishes": publishes,
        "others": publishes - says, "evalsha_calls": says, "evalsha_usec": 40,
        "spublish_calls": publishes, "spublish_usec": 10, "script_us_per_call": 4.0,
        "master_cpu_s": 0.01, "master_cpu_us_per_publish": 10.0, "replica_cpu_s": 0.0,
    }  # fmt: skip


def test_commandstats_are_read_as_calls_and_usec() -> None:
    text = (
        "# Commandstats\r\n"
        "cmdstat_evalsha:calls=12,usec=345,usec_per_call=28.75,rejected_calls=0,failed_calls=0\r\n"
        "cmdstat_script|load:calls=1,usec=20,usec_per_call=20.00,rejected_calls=0,failed_calls=0\r\n"
    )

    assert parse_commandstats(text) == {"evalsha": (12, 345), "script|load": (1, 20)}


def test_says_per_room_counts_every_publishers_messages() -> None:
    says = says_per_room(chat_plan(rooms=3, room_size=4, messages=5))

    assert says == {f"bench-chat-{r}": 4 * 5 for r in range(3)}


def test_a_shard_that_published_less_than_its_rooms_said_is_warned_about() -> None:
    shards = [shard_record(0, says=30, publishes=32), shard_record(1, says=30, publishes=29)]

    (warning,) = shard_warnings(shards)

    assert warning == "shard 1 (slots 0-5460) published 29 messages; its rooms said 30"


def test_a_shards_canaries_are_no_cause_for_a_warning() -> None:
    assert shard_warnings([shard_record(0, says=30, publishes=33)]) == []


def test_the_table_shows_a_row_per_shard() -> None:
    metrics = {"shards": [shard_record(0, 6, 6), shard_record(1, 9, 9)]}
    record = {
        "scenario": "chat",
        "params": {"rooms": 2, "room_size": 3, "messages": 5, "say_rate": 2.0, "body_size": 200},
        "results": [
            {"target": "roomcast", "backend": "redis-cluster", "nodes": 2, "metrics": metrics,
             "workers": [], "problems": [], "warnings": []},
        ],
        "comparison": None,
        "ok": True,
    }  # fmt: skip

    lines = format_table(record).splitlines()

    start = lines.index("per shard (roomcast, Redis Cluster):")
    assert lines[start + 1].split()[:5] == ["shard", "slots", "rooms", "says", "publishes"]
    assert [line.split()[0] for line in lines[start + 2 : start + 4]] == ["0", "1"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRedisCluster]:
    with LocalRedisCluster(masters=3, replicas=1) as running:
        yield running


@pytest.mark.redis
def test_the_cluster_lists_each_master_with_its_replica_and_all_slots(
    cluster: LocalRedisCluster,
) -> None:
    shards = cluster.shards()

    assert len(shards) == 3
    assert all(len(shard.replicas) == 1 for shard in shards)
    assert sum(high - low + 1 for s in shards for low, high in s.slots) == 16384
    assert {s.master.port for s in shards}.isdisjoint(r.port for s in shards for r in s.replicas)


@pytest.mark.redis
def test_a_rooms_slot_is_the_one_redis_gives_its_keys(cluster: LocalRedisCluster) -> None:
    # Every key of the room and its channel share the hash tag {namespace:room}.
    port = cluster.servers[0].port

    for room in ("lobby", "bench-chat-7", "ünïcode"):
        key = f"{{ns:{room}}}:h"
        assert room_slot("ns", room) == int(cluster.cli(port, "cluster", "keyslot", key))


@pytest.mark.redis
def test_each_shard_served_exactly_the_says_of_its_own_rooms(cluster: LocalRedisCluster) -> None:
    plan = chat_plan(rooms=12, room_size=2, messages=3)
    target = Target("roomcast", (), (), True, "redis-cluster", cluster=cluster, namespace=NAMESPACE)
    client = RedisCluster.from_url(cluster.servers[0].url)
    sha = client.script_load(SCRIPT)  # on every master, before the window (as nodes do)
    probe = ShardProbe.of(target, plan)
    assert probe is not None

    for room, says in says_per_room(plan).items():
        for _ in range(says):
            client.evalsha(sha, 1, f"{{{NAMESPACE}:{room}}}:c", "x")
    shards = probe.finish()
    client.close()

    assert sum(s["rooms"] for s in shards) == 12
    assert [s["publishes"] for s in shards] == [s["says"] for s in shards]
    assert [s["evalsha_calls"] for s in shards] == [s["says"] for s in shards]
    assert [s["others"] for s in shards] == [0, 0, 0]
    assert sum(s["says"] for s in shards) == 12 * 2 * 3
    assert shard_warnings(shards) == []
    assert all(s["script_us_per_call"] is not None for s in shards if s["says"])
    assert all(len(s["replica_pids"]) == 1 for s in shards)
