"""What a member received of a room, checked against what the room holds
(docs/HISTORY-PRESENCE.md, "Positions" and "No lost messages inside the
cluster"): every offset after the member's join, exactly once, in order,
except those of its own says (a sender never receives its own messages).
No I/O: the tests collect, this module judges."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence

__all__ = ["expected_offsets", "sequence_faults"]


def expected_offsets(joined_at: int, last: int, own: Collection[int] = ()) -> list[int]:
    """The offsets a member should receive, in order.

    Args:
        joined_at: the offset in the ``ok`` of its join (0 for a new room).
        last: the room's last offset.
        own: the offsets the ``ok`` of its own says carried.
    """
    return [offset for offset in range(joined_at + 1, last + 1) if offset not in own]


def sequence_faults(received: Sequence[int], expected: Sequence[int]) -> str | None:
    """A short account of how ``received`` differs from ``expected``, or
    ``None`` when they are equal.

    Names the missing offsets, the duplicated ones, the unexpected ones and
    the first place the order goes wrong, a few of each (a list of 2,000
    offsets compared whole makes an unreadable failure).
    """
    if list(received) == list(expected):
        return None
    wanted = set(expected)
    counts = Counter(received)
    missing = sorted(wanted - counts.keys())
    repeated = sorted(offset for offset, n in counts.items() if n > 1)
    unexpected = sorted(counts.keys() - wanted)
    disorder = next((i for i in range(1, len(received)) if received[i] <= received[i - 1]), None)
    parts = [f"received {len(received)} of {len(expected)} offsets"]
    if missing:
        parts.append(f"{len(missing)} missing (first {missing[:10]})")
    if repeated:
        parts.append(f"{len(repeated)} repeated (first {repeated[:10]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (first {unexpected[:10]})")
    if disorder is not None:
        around = list(received[max(0, disorder - 3) : disorder + 3])
        parts.append(f"out of order at index {disorder}: {around}")
    return "; ".join(parts)
