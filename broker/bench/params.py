"""The parameters of one benchmark run, exactly as they go into its record."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["CONNECTIONS_PER_WORKER", "SCENARIOS", "BenchParams", "Scenario"]

CONNECTIONS_PER_WORKER = 15_000
"""Most connections one load-generator worker gets by default: under the
20,000 file descriptors a process may hold on the reference machine, with
room to spare (see :mod:`broker.bench.limits`)."""

Scenario = Literal["fanout", "chat", "idle", "connect", "recovery", "presence"]
SCENARIOS: tuple[Scenario, ...] = ("fanout", "chat", "idle", "connect", "recovery", "presence")


@dataclass(frozen=True, slots=True)
class BenchParams:
    """Everything that shapes a run. ``broker bench SCENARIO --help`` explains each.

    Sizes not used by a scenario keep their defaults and are ignored by it.
    """

    scenario: Scenario
    # Targets.
    urls: tuple[str, ...] = ()
    spawn: bool = False
    nodes: int = 1
    redis_url: str | None = None
    spawn_redis: bool = False
    spawn_redis_cluster: bool = False
    cluster_masters: int = 3
    server_pids: tuple[int, ...] = ()
    server_args: str = ""
    history_size: int | None = None
    workers: int = 1
    redis_pid: int | None = None
    compare: str | None = None
    # Load generator.
    clients_procs: int | None = None
    connect_concurrency: int = 64
    connect_rate: float | None = None
    source_addresses: int | None = None
    timeout: float = 120.0
    drain: float = 10.0
    # Messages.
    body_size: int = 200
    window: int = 64
    messages: int = 1000
    # fanout, presence
    members: int = 1000
    rate: float | None = None
    # chat
    rooms: int = 100
    room_size: int = 10
    say_rate: float = 2.0
    # idle, connect, recovery
    connections: int = 1000
    seed: int = 1
    # idle
    idle_seconds: float = 0.0
    # recovery
    gap: int = 50
    # presence
    requests: int = 500
    in_flight: int = 1

    def connection_count(self) -> int:
        """How many client connections the scenario opens."""
        match self.scenario:
            case "fanout" | "presence":
                return self.members + 1
            case "chat":
                return self.rooms * self.room_size
            case "idle" | "connect" | "recovery":
                return self.connections

    def worker_count(self) -> int:
        """Receiving worker processes: as asked, or about one per 500 connections.

        Why 500: a worker checks a delivery in a few µs, so at the ~100k
        deliveries/s a 2-core machine sustains, two workers stay well under
        60 % CPU each; more would only compete with the broker for cores.
        Past 60,000 connections, enough workers that none holds more than
        :data:`CONNECTIONS_PER_WORKER` (one process's descriptors are limited).
        """
        if self.clients_procs is not None:
            return max(1, self.clients_procs)
        count = self.connection_count()
        by_cpu = min(4, max(1, math.ceil(count / 500)))
        return max(by_cpu, math.ceil(count / CONNECTIONS_PER_WORKER))

    def as_record(self) -> dict[str, Any]:
        """The parameters as plain JSON values (with the worker count resolved)."""
        record = dataclasses.asdict(self)
        record["clients_procs"] = self.worker_count()
        record["urls"] = list(self.urls)
        record["server_pids"] = list(self.server_pids)
        return record
