"""The verdict on a rejoin with ``since`` (docs/HISTORY-PRESENCE.md,
"Recovery: join with since"), and a client's position as its frames move it."""

from __future__ import annotations

import protocol
from broker.bench.messages import RoomPosition
from broker.bench.recovery_member import Rejoiner, Verdict, judge

SINCE = RoomPosition(3, "e-1")
END = RoomPosition(6, "e-1")


def ok(recovered: bool | None = True, offset: int = 6, epoch: str = "e-1") -> protocol.Ok:
    if recovered is None:
        return protocol.Ok(ref="rejoin", offset=offset, epoch=epoch)
    return protocol.Ok(ref="rejoin", offset=offset, epoch=epoch, recovered=recovered)


def replay(*offsets: int, epoch: str = "e-1") -> list[RoomPosition]:
    return [RoomPosition(offset, epoch) for offset in offsets]


def test_exactly_the_missing_offsets_in_order_is_recovered() -> None:
    assert judge(SINCE, replay(4, 5, 6), ok(), END) is Verdict.RECOVERED


def test_nothing_missed_and_nothing_replayed_is_recovered() -> None:
    assert judge(END, [], ok(), END) is Verdict.RECOVERED


def test_recovered_false_without_a_replay_is_not_recovered() -> None:
    assert judge(SINCE, [], ok(recovered=False), END) is Verdict.NOT_RECOVERED


def test_an_ok_without_recovered_is_not_recovered() -> None:
    assert judge(SINCE, [], ok(recovered=None), END) is Verdict.NOT_RECOVERED


def test_a_replay_before_recovered_false_is_wrong() -> None:
    assert judge(SINCE, replay(6), ok(recovered=False), END) is Verdict.WRONG


def test_a_missing_offset_in_the_replay_is_wrong() -> None:
    assert judge(SINCE, replay(4, 6), ok(), END) is Verdict.WRONG


def test_a_reordered_replay_is_wrong() -> None:
    assert judge(SINCE, replay(5, 4, 6), ok(), END) is Verdict.WRONG


def test_a_duplicate_in_the_replay_is_wrong() -> None:
    assert judge(SINCE, replay(4, 5, 5, 6), ok(), END) is Verdict.WRONG


def test_an_ok_short_of_the_rooms_position_is_wrong() -> None:
    assert judge(SINCE, replay(4, 5), ok(offset=5), END) is Verdict.WRONG


def test_a_replay_in_another_epoch_is_wrong() -> None:
    assert judge(SINCE, replay(4, 5, 6, epoch="e-2"), ok(), END) is Verdict.WRONG


async def test_a_client_follows_its_rooms_position_from_the_messages() -> None:
    client = Rejoiner("ws://127.0.0.1:1/ws", "r")
    body = b'{"p":-1,"s":1,"t":0}'

    client.on_texts(
        [
            b'{"type":"message","room":"other","from":"s-1","body":{},"offset":9,"epoch":"e-9"}',
            b'{"type":"message","room":"r","from":"s-1","body":' + body + b',"offset":4,'
            b'"epoch":"e-1"}',
            b'{"type":"joined","room":"r","session":"s-2"}',
        ]
    )

    assert (client.offset, client.epoch) == (4, "e-1")
    assert client.reached(RoomPosition(4, "e-1"))
    assert not client.reached(RoomPosition(5, "e-1"))
    assert not client.reached(RoomPosition(4, "e-2"))
