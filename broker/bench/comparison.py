"""The ``--compare`` ratios as sentences, phrased as the README phrases them
("roomcast used 36x less server CPU per delivery than textbook"). No I/O.

A ratio in the JSON record is always roomcast ÷ baseline; a sentence turns it
into a factor of at least 1 and says in which direction it goes, so that the
reader never has to remember whether a metric is better high or low.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

__all__ = ["SAME_WITHIN", "WORDED_METRICS", "comparison_lines", "describe_ratio", "format_factor"]

SAME_WITHIN: Final = 1.05
"""Factors under this (5 %) are reported as "about the same"."""


class _Wording(NamedTuple):
    """How one compared metric reads.

    Attributes:
        what: the metric, as in "about the same <what>".
        template: the sentence after the target's name; ``{factor}`` and
            ``{word}`` are filled in.
        above: ``{word}`` when the ratio is above 1 (roomcast's value is larger).
        below: ``{word}`` when it is below 1.
    """

    what: str
    template: str
    above: str
    below: str


_WORDINGS: Final[dict[str, _Wording]] = {
    "deliveries_per_s": _Wording(
        what="deliveries per second",
        template="delivered {factor} {word} messages per second than",
        above="more",
        below="fewer",
    ),
    "server_cpu_us_per_delivery": _Wording(
        what="server CPU per delivery",
        template="used {factor} {word} server CPU per delivery than",
        above="more",
        below="less",
    ),
    "latency_us.p99": _Wording(
        what="p99 latency",
        template="had a {factor} {word} p99 latency than",
        above="higher",
        below="lower",
    ),
    "rss_per_connection_bytes": _Wording(
        what="server memory per connection",
        template="used {factor} {word} server memory (RSS) per connection than",
        above="more",
        below="less",
    ),
    "connections_per_s": _Wording(
        what="connections per second",
        template="connected and joined {factor} {word} clients per second than",
        above="more",
        below="fewer",
    ),
    "server_cpu_us_per_connection": _Wording(
        what="server CPU per connection",
        template="used {factor} {word} server CPU per connection than",
        above="more",
        below="less",
    ),
    "time_to_joined_us.p99": _Wording(
        what="p99 time to joined",
        template="had a {factor} {word} p99 time to joined than",
        above="longer",
        below="shorter",
    ),
}
"""One wording per metric that ``--compare`` compares (runner.COMPARED)."""

WORDED_METRICS: Final = frozenset(_WORDINGS)
"""The metrics :func:`describe_ratio` can phrase."""


def format_factor(factor: float) -> str:
    """``36x`` from 10 up, ``5.4x`` below (the README's precision)."""
    return f"{factor:,.0f}x" if factor >= 10 else f"{factor:.1f}x"


def describe_ratio(path: str, ours: str, baseline: str, ratio: float | None) -> str:
    """One sentence for the ratio ``ours ÷ baseline`` of the metric at ``path``.

    Args:
        path: a metric compared by ``--compare`` (``server_cpu_us_per_delivery``).
        ours: the measured target's name.
        baseline: the baseline's name.
        ratio: ours ÷ baseline; None when one side had no value.
    """
    wording = _WORDINGS[path]
    if ratio is None or ratio <= 0:
        return f"{wording.what}: no comparison (no value for one of {ours} and {baseline})"
    factor = ratio if ratio >= 1 else 1 / ratio
    if factor < SAME_WITHIN:
        return f"{ours} and {baseline}: about the same {wording.what} (within 5 %)"
    word = wording.above if ratio > 1 else wording.below
    return f"{ours} {wording.template.format(factor=format_factor(factor), word=word)} {baseline}"


def comparison_lines(comparison: dict[str, Any], ours: str) -> list[str]:
    """Every ratio of a record's ``comparison`` as a sentence, in the record's order."""
    baseline = str(comparison["baseline"])
    return [
        describe_ratio(path, ours, baseline, values.get("ratio"))
        for path, values in comparison.items()
        if path != "baseline"
    ]
