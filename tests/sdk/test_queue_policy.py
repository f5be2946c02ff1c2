"""The inbound queue policy against a real node: when the application does
not read, the oldest events are dropped, counted and warned about, and the
newest are kept; dropped messages come back as a ``Gap`` and the room's
position moves past them only once it is read. Memory node only: there the
receiver's messages are queued before the sender's ``ok``, so a ``ping`` by
the receiver proves they arrived."""

from __future__ import annotations

import asyncio
import logging

import pytest

from roomcast_client import Client, Gap, Message, Position, decode_body
from tests.conftest import BrokerFactory
from tests.sdk.conftest import SdkFactory


async def _flooded(broker: BrokerFactory, sdk: SdkFactory) -> Client:
    """A receiver with a queue of 5 that 20 messages reached unread in ``flood``."""
    node = broker()
    receiver = await sdk(node.url, max_queue=5)
    sender = await sdk(node.url)
    await sender.join("flood")
    await receiver.join("flood")
    for i in range(20):
        await sender.say("flood", i)
    await receiver.ping()  # its pong comes after every message above
    return receiver


async def test_unread_events_beyond_the_bound_drop_the_oldest(
    broker: BrokerFactory, sdk: SdkFactory, caplog: pytest.LogCaptureFixture
) -> None:
    node = broker()
    receiver = await sdk(node.url, max_queue=5)
    sender = await sdk(node.url)
    await sender.join("flood")
    await receiver.join("flood")

    with caplog.at_level(logging.WARNING, logger="roomcast_client"):
        for i in range(20):
            await sender.say("flood", i)
        await receiver.ping()  # its pong comes after every message above

    assert receiver.dropped == 15
    kept = [await asyncio.wait_for(receiver.receive(), 5) for _ in range(6)]  # and a Gap
    assert [decode_body(e) for e in kept if isinstance(e, Message)] == [15, 16, 17, 18, 19]
    assert receiver.stats()["queued"] == 0
    assert [r.getMessage() for r in caplog.records if "dropping the oldest" in r.getMessage()]


async def test_replies_are_not_held_up_by_an_unread_queue(
    broker: BrokerFactory, sdk: SdkFactory
) -> None:
    node = broker()
    receiver = await sdk(node.url, max_queue=2)
    sender = await sdk(node.url)
    await sender.join("flood")
    await receiver.join("flood")
    for i in range(50):
        await sender.say("flood", i)

    await asyncio.wait_for(receiver.say("flood", "still answered"), 5)


async def test_dropped_messages_come_back_as_one_gap_before_the_rest(
    broker: BrokerFactory, sdk: SdkFactory
) -> None:
    receiver = await _flooded(broker, sdk)

    gap = await asyncio.wait_for(receiver.receive(), 5)
    first_kept = await asyncio.wait_for(receiver.receive(), 5)

    assert isinstance(gap, Gap) and isinstance(first_kept, Message)
    assert (gap.room, gap.epoch, gap.after_offset, gap.last_offset, gap.dropped) == (
        "flood",
        first_kept.epoch,
        0,
        15,
        15,
    )
    assert first_kept.offset == 16


async def test_position_moves_past_dropped_messages_only_once_the_gap_is_read(
    broker: BrokerFactory, sdk: SdkFactory
) -> None:
    receiver = await _flooded(broker, sdk)
    joined_at = receiver.position("flood")
    assert joined_at is not None and joined_at.offset == 0

    gap = await asyncio.wait_for(receiver.receive(), 5)
    assert isinstance(gap, Gap)
    assert receiver.position("flood") == Position(offset=15, epoch=gap.epoch)
    for _ in range(5):
        await asyncio.wait_for(receiver.receive(), 5)
    assert receiver.position("flood") == Position(offset=20, epoch=gap.epoch)
