"""The payload format on a room channel: what one node packs, another unpacks."""

from __future__ import annotations

import pytest

from broker.backends.redis.envelope import pack, unpack


def test_another_node_unpacks_what_a_node_packed() -> None:
    data = pack(b"n-a", "s-1", 1700000000.25, b'{"type":"message","body":"a\\nb"}')

    assert unpack(data, skip=b"n-b") == (
        "s-1",
        b'{"type":"message","body":"a\\nb"}',
        1700000000.25,
    )


def test_a_payload_may_hold_newlines() -> None:
    data = pack(b"n-a", "s-1", 0.0, b"line one\nline two")

    assert unpack(data, skip=b"n-b") == ("s-1", b"line one\nline two", 0.0)


def test_a_nodes_own_publish_unpacks_to_nothing() -> None:
    assert unpack(pack(b"n-a", "s-1", 0.0, b"{}"), skip=b"n-a") is None


@pytest.mark.parametrize(
    "data",
    [b"not an envelope", b"n-a\ns-1\nnot-a-time\n{}", b"n-a\n\xff\n0.0\n{}"],
    ids=["too-few-fields", "bad-time", "bad-utf8"],
)
def test_anything_else_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        unpack(data, skip=b"n-b")
