"""The latency histogram: exact low values, bounded error above, lossless merging."""

from __future__ import annotations

import random

from broker.bench.histogram import Histogram, bucket_of, upper_edge


def test_values_below_128_have_buckets_of_their_own() -> None:
    for value in range(128):
        assert bucket_of(value) == value
        assert upper_edge(value) == value


def test_every_value_lies_in_its_bucket_within_one_64th() -> None:
    rng = random.Random(7)
    values = [*range(128, 70_000), *(rng.randrange(1 << 50) for _ in range(20_000))]
    for value in values:
        index = bucket_of(value)
        assert upper_edge(index - 1) < value <= upper_edge(index)
        assert upper_edge(index) - value <= value / 64


def test_percentiles_never_understate_and_stop_at_the_maximum() -> None:
    hist = Histogram()
    for value in range(1, 10_001):
        hist.record(value)

    p50, p99, p999 = hist.percentile(0.5), hist.percentile(0.99), hist.percentile(0.999)

    assert p50 is not None and 5_000 <= p50 <= 5_000 * (1 + 1 / 64)
    assert p99 is not None and 9_900 <= p99 <= 9_900 * (1 + 1 / 64)
    assert p999 is not None and 9_990 <= p999 <= 10_000
    assert hist.percentile(1.0) == hist.max == 10_000
    assert hist.count == 10_000
    assert hist.mean() == 5_000.5


def test_an_empty_histogram_has_no_percentiles() -> None:
    hist = Histogram()

    assert hist.percentile(0.5) is None
    assert hist.mean() is None


def test_shipping_and_merging_keeps_every_count() -> None:
    a, b, expected = Histogram(), Histogram(), Histogram()
    for value in range(0, 5_000, 3):
        a.record(value)
        expected.record(value)
    for value in range(7, 90_000, 11):
        b.record(value)
        expected.record(value)

    merged = Histogram.from_sparse(a.to_sparse(), a.total, a.max)
    merged.merge(Histogram.from_sparse(b.to_sparse(), b.total, b.max))

    assert merged.counts == expected.counts
    assert (merged.count, merged.total, merged.max) == (
        expected.count,
        expected.total,
        expected.max,
    )


def test_a_negative_latency_counts_as_zero() -> None:
    hist = Histogram()
    hist.record(-5)

    assert hist.percentile(0.5) == 0
    assert hist.max == 0
