"""Per shard of a spawned Redis Cluster: what it served in the measured window.

Read before and after the window: ``INFO commandstats`` of every master
(``SPUBLISH``, which Redis counts inside scripts too, and ``EVALSHA``) and
the CPU of every redis-server from ``/proc``. Each room's says are assigned
to the shard that owns the slot of the room's hash tag, so the record shows
whether every room's traffic landed on its own shard and nowhere else.

Definitions:
    * ``says`` of a shard: messages the run's publishers said in the rooms
      whose slot the shard owns (what it should serve).
    * ``publishes``: the SPUBLISH calls on its master. Every say ends in
      exactly one (inside the publish script with history on, bare without),
      and the nodes' canaries add one per node and shard a second or so:
      ``others`` = publishes - says is that small rest; a shard that served
      another's rooms would show it there, one that lost says below zero.
    * ``scripts`` and ``script_us_per_call``: the EVALSHA calls (publish
      scripts, history reads, presence) and the usec ``INFO commandstats``
      counts per call (the script's execution, without reading, parsing and
      writing).
    * ``master_cpu_us_per_publish``: the master process's user + system CPU
      over the window, per publish (everything: I/O, the script, sending to
      every subscribed node, feeding the replica).
    * ``replica_cpu_s``: the replicas' CPU over the window (replication), shown
      apart.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from redis.crc import key_slot

from broker.bench.plans import Plan
from broker.bench.procfs import cpu_seconds
from broker.bench.redis_cluster import ClusterShard, LocalRedisCluster
from broker.bench.targets import Target

__all__ = ["ShardProbe", "room_slot", "says_per_room", "shard_warnings"]


def room_slot(namespace: str, room: str) -> int:
    """The cluster slot of ``room``'s channel and keys (hash tag ``{namespace:room}``)."""
    return int(key_slot(f"{{{namespace}:{room}}}:c".encode()))


def says_per_room(plan: Plan) -> Counter[str]:
    """How many messages the plan's publishers say in each room after ``Go``."""
    says: Counter[str] = Counter()
    for setup in plan.setups:
        for conn in setup.conns:
            if conn.pub is not None:
                says[conn.room] += setup.messages
    return says


def _cpu(pid: int) -> float | None:
    try:
        return cpu_seconds(pid)
    except (OSError, ValueError):
        return None  # a server that died in the window (not in a benchmark run)


@dataclass
class _Reading:
    stats: dict[int, dict[str, tuple[int, int]]] = field(default_factory=dict)
    cpu: dict[int, float | None] = field(default_factory=dict)


@dataclass
class ShardProbe:
    """Readings of one cluster before the window; :meth:`finish` after it."""

    cluster: LocalRedisCluster
    shards: list[ClusterShard]
    rooms: dict[int, Counter[str]]
    """Per shard index: the says of each room it owns."""
    before: _Reading

    @classmethod
    def of(cls, target: Target, plan: Plan) -> ShardProbe | None:
        """Take the first reading; None unless the target runs on a spawned cluster."""
        if target.cluster is None or target.namespace is None:
            return None
        shards = target.cluster.shards()
        rooms: dict[int, Counter[str]] = {index: Counter() for index in range(len(shards))}
        for room, says in says_per_room(plan).items():
            slot = room_slot(target.namespace, room)
            owner = next(i for i, shard in enumerate(shards) if shard.owns(slot))
            rooms[owner][room] = says
        probe = cls(target.cluster, shards, rooms, _Reading())
        probe.before = probe._read()
        return probe

    def _read(self) -> _Reading:
        reading = _Reading()
        for shard in self.shards:
            reading.stats[shard.master.port] = self.cluster.commandstats(shard.master.port)
            for server in (shard.master, *shard.replicas):
                reading.cpu[server.pid] = _cpu(server.pid)
        return reading

    def finish(self) -> list[dict[str, Any]]:
        """The second reading, and one record per shard."""
        after = self._read()
        return [self._record(i, shard, after) for i, shard in enumerate(self.shards)]

    def _delta(self, after: _Reading, port: int, command: str) -> tuple[int, int]:
        calls0, usec0 = self.before.stats[port].get(command, (0, 0))
        calls1, usec1 = after.stats[port].get(command, (0, 0))
        return calls1 - calls0, usec1 - usec0

    def _cpu_delta(self, after: _Reading, pid: int) -> float | None:
        first, last = self.before.cpu.get(pid), after.cpu.get(pid)
        return last - first if first is not None and last is not None else None

    def _record(self, index: int, shard: ClusterShard, after: _Reading) -> dict[str, Any]:
        port = shard.master.port
        evalsha = self._delta(after, port, "evalsha")
        spublish = self._delta(after, port, "spublish")
        publishes = spublish[0]
        master_cpu = self._cpu_delta(after, shard.master.pid)
        replica_cpus = [self._cpu_delta(after, r.pid) for r in shard.replicas]
        replica_cpu = (
            sum(c for c in replica_cpus if c is not None)
            if all(c is not None for c in replica_cpus)
            else None
        )
        rooms = self.rooms[index]
        return {
            "shard": index,
            "slots": shard.slot_text,
            "master_port": port,
            "master_pid": shard.master.pid,
            "replica_pids": [r.pid for r in shard.replicas],
            "rooms": len(rooms),
            "says": sum(rooms.values()),
            "publishes": publishes,
            "others": publishes - sum(rooms.values()),
            "evalsha_calls": evalsha[0],
            "evalsha_usec": evalsha[1],
            "spublish_calls": spublish[0],
            "spublish_usec": spublish[1],
            "script_us_per_call": round(evalsha[1] / evalsha[0], 3) if evalsha[0] else None,
            "master_cpu_s": round(master_cpu, 3) if master_cpu is not None else None,
            "master_cpu_us_per_publish": (
                round(master_cpu * 1e6 / publishes, 3)
                if master_cpu is not None and publishes
                else None
            ),
            "replica_cpu_s": round(replica_cpu, 3) if replica_cpu is not None else None,
        }


def shard_warnings(shards: list[dict[str, Any]]) -> list[str]:
    """A warning per shard that published fewer messages than its rooms said
    (some went elsewhere, or nowhere)."""
    return [
        f"shard {s['shard']} (slots {s['slots']}) published {s['publishes']:,} messages; "
        f"its rooms said {s['says']:,}"
        for s in shards
        if s["others"] < 0
    ]
