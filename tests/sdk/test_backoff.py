"""The reconnect rules: which close codes reconnect (the protocol's table,
which the SDK follows), and exponential backoff with full jitter."""

from __future__ import annotations

import random

import pytest

from protocol import CloseCode, ReconnectRule, reconnect_rule
from roomcast_client import Reconnect


def test_going_away_reconnects_at_once() -> None:
    assert reconnect_rule(CloseCode.GOING_AWAY) is ReconnectRule.AT_ONCE


@pytest.mark.parametrize("code", [CloseCode.UNSUPPORTED_DATA, CloseCode.POLICY_VIOLATION])
def test_unsupported_data_and_policy_violation_do_not_reconnect(code: CloseCode) -> None:
    assert reconnect_rule(code) is ReconnectRule.STOP


@pytest.mark.parametrize(
    "code",
    [
        CloseCode.NORMAL_CLOSURE,
        CloseCode.ABNORMAL_CLOSURE,
        CloseCode.INTERNAL_ERROR,
        CloseCode.TRY_AGAIN_LATER,
        4000,  # a code the table does not know
    ],
)
def test_other_closes_back_off(code: int) -> None:
    assert reconnect_rule(code) is ReconnectRule.BACKOFF


def test_bound_grows_exponentially_up_to_the_cap() -> None:
    policy = Reconnect(initial_delay=0.5, max_delay=3.0, factor=2.0)

    assert [policy.bound(n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_bound_survives_huge_attempt_counts() -> None:
    assert Reconnect(max_delay=7.0, factor=10.0).bound(100_000) == 7.0


def test_delays_use_full_jitter_below_the_bound() -> None:
    policy = Reconnect(initial_delay=1.0, max_delay=8.0)
    rng = random.Random(7)

    delays = [policy.delay(3, rng) for _ in range(2000)]

    assert all(0.0 <= d <= 8.0 for d in delays)
    # Full jitter spreads over the whole range, not just near the bound.
    assert min(delays) < 0.5
    assert max(delays) > 7.5


@pytest.mark.parametrize(
    "options",
    [{"initial_delay": -1.0}, {"factor": 0.5}, {"max_attempts": 0}],
)
def test_nonsense_policies_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Reconnect(**options)  # type: ignore[arg-type]
