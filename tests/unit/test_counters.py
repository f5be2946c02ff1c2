"""broker.counters: what a node counts, and the latency histogram read by
the metrics endpoint."""

from __future__ import annotations

from broker.counters import Counters, LatencyHistogram


def test_a_node_starts_counting_from_zero() -> None:
    counters = Counters()
    assert (counters.sessions, counters.says, sum(counters.latency.counts)) == (0, 0, 0)
    assert counters.errors["rate_limited"] == 0


def test_an_observation_lands_in_the_first_bucket_that_holds_it() -> None:
    histogram = LatencyHistogram()
    histogram.observe(0.003)
    assert histogram.counts[LatencyHistogram.BOUNDS.index(0.005)] == 1


def test_an_observation_on_a_bound_counts_in_that_bound() -> None:
    histogram = LatencyHistogram()
    histogram.observe(0.001)
    assert dict(histogram.buckets())["0.001"] == 1.0


def test_buckets_are_cumulative_and_end_with_inf() -> None:
    histogram = LatencyHistogram()
    for seconds in (0.0001, 0.2, 60.0):
        histogram.observe(seconds)
    buckets = histogram.buckets()
    assert buckets[0] == ("0.0005", 1.0)
    assert dict(buckets)["0.25"] == 2.0
    assert buckets[-1] == ("+Inf", 3.0)


def test_the_sum_adds_every_observation() -> None:
    histogram = LatencyHistogram()
    histogram.observe(0.25)
    histogram.observe(0.5)
    assert histogram.sum == 0.75
