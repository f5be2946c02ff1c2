"""What one target did in a benchmark run, as it goes into the run's record,
and where a run is (for the message when ``--timeout`` cuts it short)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from broker.bench.targets import Target

__all__ = ["Outcome", "Progress"]


@dataclass
class Progress:
    """Where the run is, for the message when ``--timeout`` cuts it short."""

    phase: str = "starting"


@dataclass
class Outcome:
    """What one target did in the scenario."""

    target: Target
    metrics: dict[str, Any] = field(default_factory=dict)
    workers: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No message lost, duplicated or reordered; no connection failed."""
        return not self.problems

    def record(self) -> dict[str, Any]:
        """This outcome as plain JSON values."""
        target = self.target
        return {
            "target": target.name,
            "backend": target.backend,
            "nodes": len(target.urls),
            "urls": list(target.urls),
            "spawned": target.spawned,
            "server_pids": list(target.server_pids),
            "redis_pid": target.redis_pid,
            "ok": self.ok,
            "problems": self.problems,
            "warnings": self.warnings,
            "metrics": self.metrics,
            "workers": self.workers,
        }
