"""``--compare`` ratios read as sentences, in the README's words."""

from __future__ import annotations

import pytest

from broker.bench.comparison import comparison_lines, describe_ratio, format_factor
from broker.bench.runner import COMPARED


def test_a_lower_cpu_per_delivery_reads_as_times_less() -> None:
    sentence = describe_ratio("server_cpu_us_per_delivery", "roomcast", "textbook", 0.0277)

    assert sentence == "roomcast used 36x less server CPU per delivery than textbook"


def test_a_higher_rate_reads_as_times_more() -> None:
    sentence = describe_ratio("deliveries_per_s", "roomcast", "textbook", 32.3)

    assert sentence == "roomcast delivered 32x more messages per second than textbook"


def test_a_worse_result_is_said_as_plainly_as_a_better_one() -> None:
    sentence = describe_ratio("latency_us.p99", "roomcast", "textbook", 2.5)

    assert sentence == "roomcast had a 2.5x higher p99 latency than textbook"


def test_a_ratio_within_five_percent_reads_as_about_the_same() -> None:
    sentence = describe_ratio("connections_per_s", "roomcast", "textbook", 0.97)

    assert sentence == "roomcast and textbook: about the same connections per second (within 5 %)"


def test_a_missing_value_is_said_to_be_missing() -> None:
    sentence = describe_ratio("rss_per_connection_bytes", "roomcast", "textbook", None)

    assert sentence.startswith("server memory per connection: no comparison")


@pytest.mark.parametrize(("factor", "text"), [(36.1, "36x"), (1041.2, "1,041x"), (5.43, "5.4x")])
def test_factors_have_the_readmes_precision(factor: float, text: str) -> None:
    assert format_factor(factor) == text


@pytest.mark.parametrize("path", sorted({p for paths in COMPARED.values() for p in paths}))
def test_every_compared_metric_has_a_wording(path: str) -> None:
    assert describe_ratio(path, "roomcast", "textbook", 3.0).startswith("roomcast ")


def test_a_records_comparison_becomes_one_sentence_per_metric_in_order() -> None:
    comparison = {
        "baseline": "textbook",
        "deliveries_per_s": {"roomcast": 10.0, "textbook": 5.0, "ratio": 2.0},
        "server_cpu_us_per_delivery": {"roomcast": 1.0, "textbook": 4.0, "ratio": 0.25},
    }

    assert comparison_lines(comparison, "roomcast") == [
        "roomcast delivered 2.0x more messages per second than textbook",
        "roomcast used 4.0x less server CPU per delivery than textbook",
    ]
