"""A run too short to measure says so, and says what size would do."""

from __future__ import annotations

import pytest

from broker.bench.advice import round_up, short_window_warning
from broker.bench.params import BenchParams


def test_a_short_fanout_window_suggests_enough_messages_for_one_second() -> None:
    params = BenchParams("fanout", messages=500)

    warning = short_window_warning(params, {"window_s": 0.13})

    assert warning is not None
    assert "the measured window was 0.13 s, under 1 s" in warning
    assert warning.endswith("--messages 3900 would measure about 1 s")


def test_a_short_connect_storm_suggests_more_connections() -> None:
    params = BenchParams("connect", connections=60)

    warning = short_window_warning(params, {"duration_s": 0.05})

    assert warning is not None
    assert "--connections 1200 would measure about 1 s" in warning


def test_a_window_of_a_second_or_more_gets_no_warning() -> None:
    assert short_window_warning(BenchParams("chat"), {"window_s": 1.0}) is None


def test_a_run_that_measured_nothing_gets_no_size_advice() -> None:
    # No delivery at all is a PROBLEM of its own; a size would not fix it.
    assert short_window_warning(BenchParams("fanout"), {"window_s": 0.0}) is None


def test_idle_measures_memory_not_a_window() -> None:
    assert short_window_warning(BenchParams("idle"), {"window_s": 0.01}) is None


@pytest.mark.parametrize(
    ("value", "rounded"),
    [(0.4, 1), (7.2, 8), (10.0, 10), (11.2, 12), (3846.2, 3900), (1e5, 100000)],
)
def test_sizes_are_rounded_up_to_two_significant_digits(value: float, rounded: int) -> None:
    assert round_up(value) == rounded
