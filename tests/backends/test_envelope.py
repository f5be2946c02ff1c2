"""The payload format on a room channel: what one node packs, another
unpacks; and the names of a room's keys (one hash tag)."""

from __future__ import annotations

import pytest

from broker.backends.redis.envelope import RoomKeys, node_channel, pack, pack_head, room_of, unpack


def test_another_node_unpacks_what_a_node_packed() -> None:
    data = pack(b"n-a", "s-1", 1700000000.25, b'{"type":"message","body":"a\\nb"}', 42, "e-9f")

    assert unpack(data) == ("s-1", b'{"type":"message","body":"a\\nb"}', 1700000000.25, 42, "e-9f")


def test_without_a_position_the_offset_is_0_and_the_epoch_empty() -> None:
    assert unpack(pack(b"n-a", "s-1", 0.0, b"{}")) == ("s-1", b"{}", 0.0, 0, "")


def test_a_payload_may_hold_newlines() -> None:
    data = pack(b"n-a", "s-1", 0.0, b"line one\nline two")

    assert unpack(data)[1] == b"line one\nline two"


def test_the_head_is_what_the_publish_script_completes() -> None:
    head = pack_head(b"n-a", "s-1", 2.5)

    assert head + b"3\ne-1\n{}" == pack(b"n-a", "s-1", 2.5, b"{}", 3, "e-1")


@pytest.mark.parametrize(
    "data",
    [
        b"not an envelope",
        b"n-a\ns-1\nnot-a-time\n0\n\n{}",
        b"n-a\n\xff\n0.0\n0\n\n{}",
        b"n-a\ns-1\n0.0\nx\n\n{}",
    ],
    ids=["too-few-fields", "bad-time", "bad-utf8", "bad-offset"],
)
def test_anything_else_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        unpack(data)


def test_every_key_of_a_room_and_its_channel_share_one_hash_tag() -> None:
    keys = RoomKeys.of("ns", "lobby")

    assert keys == RoomKeys(b"{ns:lobby}:p", b"{ns:lobby}:h", b"{ns:lobby}:c")


def test_the_room_of_a_channel_is_read_back() -> None:
    assert room_of("ns", RoomKeys.of("ns", "a:b.c").channel) == "a:b.c"


@pytest.mark.parametrize(
    "channel", [b"{ns:lobby}:h", b"{other:lobby}:c", node_channel("ns", b"n-a")]
)
def test_anything_but_a_room_channel_has_no_room(channel: bytes) -> None:
    assert room_of("ns", channel) is None
