"""Positions and history through the SDK (docs/HISTORY-PRESENCE.md,
"Positions" and "history"): messages carry their offset and epoch, ``join``
and ``say`` return positions, ``history`` reads with ``limit`` and
``before``, and its refusals are typed. Run against a memory node and a
Redis node."""

from __future__ import annotations

import asyncio

import pytest

from roomcast_client import (
    BadRequest,
    Client,
    HistoryPage,
    NotMember,
    Position,
    decode_body,
)
from tests.conftest import BrokerFactory
from tests.sdk.conftest import SdkFactory, next_message
from tests.support.processes import BrokerProcess


async def _room_with(node: BrokerProcess, sdk: SdkFactory, room: str, count: int) -> Client:
    """A member of ``room`` after it said ``0 .. count-1`` there."""
    speaker = await sdk(node.url)
    await speaker.join(room)
    for i in range(count):
        await speaker.say(room, i)
    return speaker


def _bodies(page: HistoryPage) -> list[object]:
    return [decode_body(message) for message in page.messages]


async def test_message_carries_the_offset_and_epoch_its_say_got(
    node: BrokerProcess, sdk: SdkFactory
) -> None:
    receiver, sender = await sdk(node.url), await sdk(node.url)
    await receiver.join("pos")
    await sender.join("pos")

    said = await sender.say("pos", "hi")

    message = await asyncio.wait_for(next_message(receiver), 5)
    assert said is not None
    assert (message.offset, message.epoch) == (said.offset, said.epoch)


async def test_says_get_consecutive_offsets(node: BrokerProcess, sdk: SdkFactory) -> None:
    speaker = await _room_with(node, sdk, "count", 0)

    first = await speaker.say("count", "a")
    second = await speaker.say("count", "b")

    assert first is not None and second is not None
    assert (first.offset, second.offset) == (1, 2)
    assert first.epoch == second.epoch


async def test_join_returns_the_position_of_the_last_message_before_it(
    node: BrokerProcess, sdk: SdkFactory
) -> None:
    speaker = await _room_with(node, sdk, "late", 3)
    last = await speaker.say("late", "last")
    latecomer = await sdk(node.url)

    joined_at = await latecomer.join("late")

    assert joined_at == last
    assert latecomer.position("late") == last


async def test_own_says_move_the_senders_position(node: BrokerProcess, sdk: SdkFactory) -> None:
    speaker = await _room_with(node, sdk, "mine", 2)

    said = await speaker.say("mine", "third")

    assert said is not None and said.offset == 3
    assert speaker.position("mine") == said


async def test_history_with_limit_gives_the_newest_oldest_first(
    node: BrokerProcess, sdk: SdkFactory
) -> None:
    speaker = await _room_with(node, sdk, "hist", 5)

    page = await speaker.history("hist", limit=2)

    assert _bodies(page) == [3, 4]
    assert [m.offset for m in page.messages] == [4, 5]
    assert page.position == speaker.position("hist")


async def test_history_before_pages_back(node: BrokerProcess, sdk: SdkFactory) -> None:
    speaker = await _room_with(node, sdk, "pages", 5)

    page = await speaker.history("pages", limit=2, before=4)

    assert [m.offset for m in page.messages] == [2, 3]


async def test_history_without_limit_gives_every_kept_message(
    node: BrokerProcess, sdk: SdkFactory
) -> None:
    speaker = await _room_with(node, sdk, "all", 3)

    page = await speaker.history("all")

    assert (page.room, _bodies(page)) == ("all", [0, 1, 2])


async def test_history_of_a_room_not_joined_is_not_member(
    node: BrokerProcess, sdk: SdkFactory
) -> None:
    await _room_with(node, sdk, "closed", 1)
    outsider = await sdk(node.url)

    with pytest.raises(NotMember):
        await outsider.history("closed")


async def test_history_limit_out_of_range_is_a_bad_request(
    node: BrokerProcess, sdk: SdkFactory
) -> None:
    speaker = await _room_with(node, sdk, "bad", 1)

    with pytest.raises(BadRequest, match="limit"):
        await speaker.history("bad", limit=0)
    assert speaker.connected


async def test_room_without_history_has_no_positions(
    broker: BrokerFactory, backend_args: tuple[str, ...], sdk: SdkFactory
) -> None:
    node = broker("--history-size", "0", *backend_args)
    client = await sdk(node.url)

    joined_at = await client.join("plain")
    said = await client.say("plain", "x")
    page = await client.history("plain")

    assert (joined_at, said, client.position("plain")) == (None, None, None)
    assert page == HistoryPage("plain", None, [])


async def test_reading_history_does_not_move_the_position(
    node: BrokerProcess, sdk: SdkFactory
) -> None:
    speaker = await _room_with(node, sdk, "still", 2)
    reader = await sdk(node.url)
    await reader.join("still")
    before = reader.position("still")
    await speaker.say("still", "unread")
    await asyncio.wait_for(reader.ping(), 5)

    await reader.history("still")

    assert reader.position("still") == before
    assert isinstance(before, Position)
