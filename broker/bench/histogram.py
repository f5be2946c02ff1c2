"""A latency histogram with bounded relative error, cheap to record and to merge.

Why not keep every sample: a fan-out run records millions of latencies in
several processes; shipping and sorting them would cost more than the run.
Buckets are exact below 128 µs and then 64 per power of two (an error of at
most 1/64 of the value, about 1.6 %), like HdrHistogram with two significant
digits. Merging is adding counts, so workers ship sparse counts.

A hot loop may add to ``counts[bucket_of(v)]`` itself and then bring
``count``, ``total`` and ``max`` up to date, as :meth:`record` does.

Invariants (between calls):
    * ``count`` is the sum of all bucket counts.
    * ``max`` is the exact largest value recorded (not a bucket edge).
"""

from __future__ import annotations

import math

__all__ = ["Histogram", "bucket_of", "upper_edge"]

_LINEAR = 128  # values below this have a bucket of their own
_SUB = 64  # buckets per power of two above it
_BUCKETS = _LINEAR + 64 * _SUB  # enough for any 64-bit value


def bucket_of(value: int) -> int:
    """The index of the bucket holding ``value`` (a non-negative int).

    Above the linear part, the bit length picks the power of two and the top
    7 bits pick one of its 64 buckets: ``64 * shift + (value >> shift)``.
    """
    if value < _LINEAR:
        return value
    shift = value.bit_length() - 7
    return (shift << 6) + (value >> shift)


def upper_edge(index: int) -> int:
    """The largest value that falls in bucket ``index``."""
    if index < _LINEAR:
        return index
    shift = (index >> 6) - 1
    top_bits = _SUB + (index & 63)
    return ((top_bits + 1) << shift) - 1


class Histogram:
    """Counts of non-negative integer values (microseconds, by convention)."""

    __slots__ = ("count", "counts", "max", "total")

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.count = 0
        self.total = 0
        self.max = 0

    def record(self, value: int) -> None:
        """Add one value; negative values (clock skew) count as 0."""
        value = max(value, 0)
        self.counts[bucket_of(value)] += 1
        self.count += 1
        self.total += value
        if value > self.max:
            self.max = value

    def merge(self, other: Histogram) -> None:
        """Add every value of ``other`` to this histogram."""
        for index, n in enumerate(other.counts):
            if n:
                self.counts[index] += n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def percentile(self, q: float) -> int | None:
        """The value at quantile ``q`` (0 < q <= 1), or None when empty.

        Returns the upper edge of the bucket holding the rank, capped at the
        exact maximum, so a reported percentile never understates.
        """
        if self.count == 0:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return min(upper_edge(index), self.max)
        return self.max

    def mean(self) -> float | None:
        """The arithmetic mean, or None when empty."""
        return self.total / self.count if self.count else None

    def to_sparse(self) -> dict[int, int]:
        """The non-empty buckets, to ship to another process."""
        return {index: n for index, n in enumerate(self.counts) if n}

    @classmethod
    def from_sparse(cls, sparse: dict[int, int], total: int, maximum: int) -> Histogram:
        """Rebuild a histogram shipped with :meth:`to_sparse`."""
        histogram = cls()
        for index, n in sparse.items():
            histogram.counts[index] += n
            histogram.count += n
        histogram.total = total
        histogram.max = maximum
        return histogram
