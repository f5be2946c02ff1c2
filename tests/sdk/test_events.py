"""Events arrive typed: protocol Structs for room events, bodies as
``msgspec.Raw`` with :func:`decode_body`; the per-room view takes its room's
events. Run against a memory node and a Redis node."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from roomcast_client import Client, ClientClosed, Joined, Left, Message, decode_body
from tests.sdk.conftest import SdkFactory, next_message
from tests.support.processes import BrokerProcess


class Chat(msgspec.Struct):
    text: str


async def _pair(node: BrokerProcess, sdk: SdkFactory, room: str) -> tuple[Client, Client]:
    """Two clients in ``room``; the first has seen the second join."""
    first, second = await sdk(node.url), await sdk(node.url)
    await first.join(room)
    await second.join(room)
    assert await asyncio.wait_for(first.receive(), 5) == Joined(room=room, session=second.session)
    return first, second


async def test_message_is_typed_with_room_sender_and_raw_body(
    node: BrokerProcess, sdk: SdkFactory
) -> None:
    receiver, sender = await _pair(node, sdk, "lobby")

    await sender.say("lobby", {"text": "hi", "n": [1, 2]})

    event = await asyncio.wait_for(receiver.receive(), 5)
    assert isinstance(event, Message)
    assert (event.room, event.from_) == ("lobby", sender.session)
    assert isinstance(event.body, msgspec.Raw)
    assert decode_body(event) == {"text": "hi", "n": [1, 2]}


async def test_body_decodes_into_a_given_type(node: BrokerProcess, sdk: SdkFactory) -> None:
    receiver, sender = await _pair(node, sdk, "typed")

    await sender.say("typed", Chat(text="hello"))

    event = await asyncio.wait_for(receiver.receive(), 5)
    assert isinstance(event, Message)
    assert decode_body(event, Chat) == Chat(text="hello")


async def test_raw_body_is_sent_as_is(node: BrokerProcess, sdk: SdkFactory) -> None:
    receiver, sender = await _pair(node, sdk, "raw")

    await sender.say("raw", msgspec.Raw(b'{"already":"encoded"}'))

    event = await asyncio.wait_for(receiver.receive(), 5)
    assert isinstance(event, Message)
    assert bytes(event.body) == b'{"already":"encoded"}'


async def test_sender_does_not_receive_its_own_message(
    node: BrokerProcess, sdk: SdkFactory
) -> None:
    receiver, sender = await _pair(node, sdk, "echo")

    await sender.say("echo", "one")
    await receiver.say("echo", "two")

    # With Redis, the first member's own `joined` may reach the node after
    # the second joined; only messages matter here.
    event = await asyncio.wait_for(next_message(sender), 5)
    assert decode_body(event) == "two"


async def test_left_is_typed(node: BrokerProcess, sdk: SdkFactory) -> None:
    watcher, leaver = await _pair(node, sdk, "door")

    await leaver.leave("door")

    assert await asyncio.wait_for(watcher.receive(), 5) == Left(room="door", session=leaver.session)


async def test_room_view_gets_its_rooms_events_and_the_client_the_rest(
    node: BrokerProcess, sdk: SdkFactory
) -> None:
    receiver, sender = await sdk(node.url), await sdk(node.url)
    for room in ("lobby", "other"):
        await receiver.join(room)
        await sender.join(room)

    async with receiver.room("lobby") as lobby:
        await sender.say("other", "to other")
        await sender.say("lobby", "to lobby")

        in_view = await asyncio.wait_for(lobby.receive(), 5)
        assert isinstance(in_view, Message)
        assert (in_view.room, decode_body(in_view)) == ("lobby", "to lobby")
    rest = [await asyncio.wait_for(receiver.receive(), 5) for _ in range(3)]
    rooms = [e.room if isinstance(e, Message | Joined | Left) else None for e in rest]
    assert [(type(e).__name__, room) for e, room in zip(rest, rooms, strict=True)] == [
        ("Joined", "lobby"),
        ("Joined", "other"),
        ("Message", "other"),
    ]


async def test_closed_room_view_returns_its_room_to_the_client(
    node: BrokerProcess, sdk: SdkFactory
) -> None:
    receiver, sender = await _pair(node, sdk, "lobby")
    view = receiver.room("lobby")
    view.close()

    await sender.say("lobby", "back to the client")

    event = await asyncio.wait_for(receiver.receive(), 5)
    assert isinstance(event, Message)
    assert decode_body(event) == "back to the client"
    with pytest.raises(ClientClosed):
        await view.receive()


async def test_room_view_iterates_with_async_for(node: BrokerProcess, sdk: SdkFactory) -> None:
    receiver, sender = await _pair(node, sdk, "loop")
    got: list[object] = []

    async with receiver.room("loop") as view, asyncio.timeout(5):
        for i in range(3):
            await sender.say("loop", i)
        async for event in view:
            assert isinstance(event, Message)
            got.append(decode_body(event))
            if len(got) == 3:
                break

    assert got == [0, 1, 2]


async def test_iteration_ends_quietly_when_the_client_is_closed(
    node: BrokerProcess, sdk: SdkFactory
) -> None:
    client = await sdk(node.url)

    async def drain() -> int:
        return len([event async for event in client])

    draining = asyncio.create_task(drain())
    await client.close()

    assert await asyncio.wait_for(draining, 5) == 0
