"""protocol.close_codes: one table of close codes, each with what a client
does after it (docs/PROTOCOL-ADDITIONS.md; RFC 6455 section 7.4.1)."""

from __future__ import annotations

import pytest

from protocol import CLOSE_RULES, CloseCode, ReconnectRule, reconnect_rule


def test_every_close_code_has_a_rule() -> None:
    assert set(CLOSE_RULES) == set(CloseCode)


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        (1001, ReconnectRule.AT_ONCE),  # drain: another node is up
        (1003, ReconnectRule.STOP),  # binary frames: the same client would do it again
        (1008, ReconnectRule.STOP),  # refused credentials or idle
        (1006, ReconnectRule.BACKOFF),  # dropped: maybe the network
        (1013, ReconnectRule.BACKOFF),  # slow consumer or overload
    ],
)
def test_a_known_code_gets_its_rule(code: int, rule: ReconnectRule) -> None:
    assert reconnect_rule(code) is rule


@pytest.mark.parametrize("code", [1012, 4000, 0])
def test_a_code_the_broker_does_not_use_backs_off(code: int) -> None:
    assert reconnect_rule(code) is ReconnectRule.BACKOFF


def test_the_codes_are_the_rfc_numbers() -> None:
    assert [int(CloseCode.GOING_AWAY), int(CloseCode.TRY_AGAIN_LATER)] == [1001, 1013]
