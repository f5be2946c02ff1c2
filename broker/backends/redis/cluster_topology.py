"""Which master of a Redis Cluster owns which slot, as ``CLUSTER SLOTS`` says.

A :class:`Topology` is one immutable look; the cluster backend
(:mod:`.cluster`) fetches a new one when something moved (a MOVED reply, a
subscription Redis ended, a failed connection) and every
``topology_interval`` seconds, and compares them: a slot whose master
changed is re-subscribed on the new one.

Invariants:
    * A topology names only masters; a shard is known by its master's
      address (``host:port``), so a failover makes a new shard.
    * ``failed_over`` tells a failover (the old master owns no slot any
      more: it died or became a replica) from a migration (it still owns
      others), so that only a failover starts new epochs.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.crc import key_slot

from broker.backends.redis.envelope import node_channel

__all__ = ["SLOTS", "Master", "Topology", "canary_node", "slot_of"]

SLOTS = 16384
"""Hash slots of a Redis Cluster."""


def slot_of(key: bytes) -> int:
    """The hash slot of ``key`` (its hash tag's, if it has one)."""
    return int(key_slot(key))


@dataclass(frozen=True, slots=True)
class Master:
    """One master of the cluster."""

    host: str
    port: int
    node_id: str

    @property
    def address(self) -> str:
        """``host:port``: the shard's name in logs, health and metrics."""
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Topology:
    """Slot ranges and their masters, sorted by first slot."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]
    owners: tuple[Master, ...]

    @classmethod
    def parse(cls, reply: Sequence[Any], default_host: str) -> Topology:
        """A topology from a ``CLUSTER SLOTS`` reply (an empty or ``?`` host
        is the host the reply came from)."""
        ranges: list[tuple[int, int, Master]] = []
        for entry in reply:
            start, end, primary = int(entry[0]), int(entry[1]), entry[2]
            host = _text(primary[0]) or default_host
            if host == "?":
                host = default_host
            node_id = _text(primary[2]) if len(primary) > 2 else f"{host}:{primary[1]}"
            ranges.append((start, end, Master(host, int(primary[1]), node_id)))
        ranges.sort(key=lambda item: item[0])
        return cls(
            tuple(start for start, _, _ in ranges),
            tuple(end for _, end, _ in ranges),
            tuple(owner for _, _, owner in ranges),
        )

    def owner(self, slot: int) -> Master | None:
        """The master that serves ``slot``, or None if no one does."""
        index = bisect.bisect_right(self.starts, slot) - 1
        if index >= 0 and slot <= self.ends[index]:
            return self.owners[index]
        return None

    def masters(self) -> list[Master]:
        """Every master that serves a slot, each once, in slot order."""
        return list(dict.fromkeys(self.owners))

    def covered(self) -> int:
        """How many slots have a master."""
        return sum(end - start + 1 for start, end in zip(self.starts, self.ends, strict=True))

    def slots_of(self, master: Master) -> list[tuple[int, int]]:
        """The slot ranges ``master`` serves."""
        return [
            (start, end)
            for start, end, owner in zip(self.starts, self.ends, self.owners, strict=True)
            if owner == master
        ]

    def failed_over(self, old: Master) -> bool:
        """Whether ``old``, a master before, serves no slot now (it died or
        became a replica: acknowledged writes may be lost)."""
        return old not in self.owners


def canary_node(
    namespace: str, node: bytes, owned: Iterable[tuple[int, int]], limit: int = 1_000_000
) -> bytes:
    """A name ``{node}:s{n}`` whose canary channel
    (:func:`~broker.backends.redis.envelope.node_channel`) hashes to a slot
    in one of the ``owned`` ranges: the canary channel of that shard.

    Raises:
        ValueError: none below ``limit`` (the shard owns no slot).
    """
    ranges = list(owned)
    for n in range(limit):
        name = b"%s:s%d" % (node, n)
        slot = slot_of(node_channel(namespace, name))
        if any(start <= slot <= end for start, end in ranges):
            return name
    raise ValueError("the shard owns no slot")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
