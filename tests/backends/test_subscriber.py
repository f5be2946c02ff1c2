"""The Redis subscriber: typed deliveries (sharded pub/sub), subscriptions,
the rebuild that re-subscribes exactly the wanted rooms, and the
``resubscribed`` call once a replacement subscription is whole.

On fakeredis where it is faithful; the rebuild and close tests need a real
redis-server: only a real connection that is closed wakes a reader blocked on
it (fakeredis leaves it waiting).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import fakeredis
import pytest
from redis.asyncio import Redis

from broker.backends.base import BackendUnavailable, Delivery
from broker.backends.redis import redis_client_factory
from broker.backends.redis.client import ClientFactory
from broker.backends.redis.envelope import RoomKeys, pack
from broker.backends.redis.subscriber import Subscriber
from tests.support.processes import RedisServer

NAMESPACE = "t"


class Recorder:
    """The subscriber's callbacks, with events to await what they saw."""

    def __init__(self) -> None:
        self.batches: list[list[Delivery]] = []
        self.canaries: list[bytes] = []
        self.opened = 0
        self.resubscribed = 0
        self._changed = asyncio.Event()

    def deliver(self, batch: Sequence[Delivery]) -> None:
        self.batches.append(list(batch))
        self._changed.set()

    def canary_back(self, data: bytes) -> None:
        self.canaries.append(data)
        self._changed.set()

    def on_open(self) -> None:
        self.opened += 1
        self._changed.set()

    def on_resubscribed(self) -> None:
        self.resubscribed += 1
        self._changed.set()

    @property
    def deliveries(self) -> list[Delivery]:
        return [delivery for batch in self.batches for delivery in batch]

    async def until(self, done: Callable[[], object], timeout: float = 5.0) -> None:
        """Wait until ``done()`` is true; it is checked after every callback."""
        async with asyncio.timeout(timeout):
            while not done():
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def make(connect: ClientFactory, recorder: Recorder, subscribe_timeout: float = 1.0) -> Subscriber:
    """A subscriber of node ``n-self`` that reports to ``recorder``."""
    return Subscriber(
        connect,
        b"n-self",
        NAMESPACE,
        recorder.deliver,
        recorder.canary_back,
        recorder.on_open,
        subscribe_timeout=subscribe_timeout,
        resubscribed=recorder.on_resubscribed,
    )


@pytest.fixture
async def subscriber(server: fakeredis.FakeServer, recorder: Recorder) -> AsyncIterator[Subscriber]:
    subscriber = make(lambda: fakeredis.FakeAsyncRedis(server=server), recorder)
    await subscriber.start()
    yield subscriber
    await subscriber.close()


@pytest.fixture
async def other(server: fakeredis.FakeServer) -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    """Another node's publisher connection."""
    client = fakeredis.FakeAsyncRedis(server=server)
    yield client
    await client.aclose()


async def next_turn() -> None:
    """Let the tasks that are ready run once."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def channel(room: str) -> bytes:
    return RoomKeys.of(NAMESPACE, room).channel


async def say(client: Redis, room: str, payload: bytes, node: bytes) -> None:
    await client.spublish(channel(room), pack(node, "s-1", 12.5, payload, 7, "e-1"))


async def test_another_nodes_publish_arrives_as_a_typed_delivery(
    subscriber: Subscriber, recorder: Recorder, other: fakeredis.FakeAsyncRedis
) -> None:
    await subscriber.subscribe("lobby")

    await say(other, "lobby", b'{"type":"message"}', node=b"n-other")

    await recorder.until(lambda: recorder.deliveries)
    assert recorder.deliveries == [Delivery("lobby", "s-1", b'{"type":"message"}', 12.5, 7, "e-1")]
    assert subscriber.received == 1


async def test_its_own_publish_is_delivered_back_in_order(
    subscriber: Subscriber, recorder: Recorder, other: fakeredis.FakeAsyncRedis
) -> None:
    await subscriber.subscribe("lobby")

    await say(other, "lobby", b"own", node=b"n-self")
    await say(other, "lobby", b"marker", node=b"n-other")

    await recorder.until(lambda: len(recorder.deliveries) == 2)
    assert [d.payload for d in recorder.deliveries] == [b"own", b"marker"]


async def test_a_malformed_message_is_skipped_and_the_connection_kept(
    subscriber: Subscriber, recorder: Recorder, other: fakeredis.FakeAsyncRedis
) -> None:
    await subscriber.subscribe("lobby")

    await other.spublish(channel("lobby"), b"not an envelope")
    await say(other, "lobby", b"after", node=b"n-other")

    await recorder.until(lambda: recorder.deliveries)
    assert [d.payload for d in recorder.deliveries] == [b"after"]
    assert subscriber.reconnects == 0


async def test_a_message_on_the_node_channel_goes_to_the_canary(
    subscriber: Subscriber, recorder: Recorder, other: fakeredis.FakeAsyncRedis
) -> None:
    await other.spublish(subscriber.node_channel, b"7")

    await recorder.until(lambda: recorder.canaries)
    assert recorder.canaries == [b"7"]
    assert recorder.deliveries == []


async def test_unsubscribed_room_is_no_longer_delivered(
    subscriber: Subscriber, recorder: Recorder, other: fakeredis.FakeAsyncRedis
) -> None:
    await subscriber.subscribe("gone")
    await subscriber.subscribe("kept")

    subscriber.unsubscribe("gone")
    # An unsubscribe is ordered before later subscriptions on the connection:
    # once "again" is confirmed, the UNSUBSCRIBE of "gone" was handled.
    await subscriber.subscribe("again")
    await say(other, "gone", b"lost", node=b"n-other")
    await say(other, "kept", b"kept", node=b"n-other")

    await recorder.until(lambda: recorder.deliveries)
    assert [d.room for d in recorder.deliveries] == ["kept"]


@pytest.mark.redis
async def test_a_rebuilt_connection_subscribes_exactly_the_wanted_rooms(
    shared_redis: RedisServer, recorder: Recorder
) -> None:
    connect = redis_client_factory(shared_redis.url)
    subscriber, other = make(connect, recorder), connect()
    await subscriber.start()
    try:
        await subscriber.subscribe("wanted")
        await subscriber.subscribe("left")
        subscriber.unsubscribe("left")

        await subscriber.rebuild()
        await recorder.until(lambda: recorder.resubscribed == 1)
        await say(other, "left", b"lost", node=b"n-other")
        await say(other, "wanted", b"kept", node=b"n-other")
        await other.spublish(subscriber.node_channel, b"1")

        await recorder.until(lambda: recorder.deliveries and recorder.canaries)
        assert [d.payload for d in recorder.deliveries] == [b"kept"]
        assert subscriber.reconnects == 1
    finally:
        await subscriber.close()
        await other.aclose()


async def test_the_reply_to_its_own_unsubscribe_is_not_taken_for_a_kick(
    subscriber: Subscriber,
) -> None:
    # A room left and joined again before Redis's reply to the SUNSUBSCRIBE
    # was read: that reply must leave the new subscription wanted (it was
    # once taken for Redis ending it, and the room was then left out of
    # every later reconnect).
    subscriber.unsubscribe("back")
    await next_turn()  # the SUNSUBSCRIBE is written
    subscriber.rooms.add("back")  # what subscribe() does first
    batch: list[Delivery] = []
    reply = {"type": "sunsubscribe", "channel": channel("back"), "pattern": None, "data": 0}
    subscriber._handle(reply, batch)
    assert "back" in subscriber.rooms
    assert subscriber.kicked == set()


async def test_an_unsubscribe_redis_sent_on_its_own_is_a_kick(subscriber: Subscriber) -> None:
    await subscriber.subscribe("moved")
    reply = {"type": "sunsubscribe", "channel": channel("moved"), "pattern": None, "data": 0}
    subscriber._handle(reply, [])
    assert "moved" not in subscriber.rooms
    assert subscriber.kicked == {"moved"}


@pytest.mark.redis
async def test_a_rebuild_subscribes_many_rooms_again(
    shared_redis: RedisServer, recorder: Recorder
) -> None:
    connect = redis_client_factory(shared_redis.url)
    subscriber, other = make(connect, recorder), connect()
    await subscriber.start()
    rooms = [f"r{i}" for i in range(2500)]  # more than one SSUBSCRIBE's worth
    try:
        await asyncio.gather(*(subscriber.subscribe(room) for room in rooms))
        await subscriber.rebuild()
        await recorder.until(lambda: recorder.resubscribed == 1)
        for room in (rooms[0], rooms[1500], rooms[-1]):
            await say(other, room, room.encode(), node=b"n-other")
        await recorder.until(lambda: len(recorder.deliveries) == 3)
        assert [d.payload for d in recorder.deliveries] == [b"r0", b"r1500", b"r2499"]
    finally:
        await subscriber.close()
        await other.aclose()


@pytest.mark.redis
async def test_resubscribed_is_called_once_after_a_rebuild_and_not_at_start(
    shared_redis: RedisServer, recorder: Recorder
) -> None:
    subscriber = make(redis_client_factory(shared_redis.url), recorder)
    await subscriber.start()
    try:
        await subscriber.subscribe("lobby")
        await recorder.until(lambda: recorder.opened == 1)
        assert recorder.resubscribed == 0

        await subscriber.rebuild()

        await recorder.until(lambda: recorder.resubscribed == 1)
        await subscriber.subscribe("other")  # another confirmation calls nothing
        assert recorder.resubscribed == 1
    finally:
        await subscriber.close()


@pytest.mark.redis
async def test_resubscribed_is_called_once_after_client_kill_type_pubsub(
    redis_server: RedisServer, recorder: Recorder
) -> None:
    connect = redis_client_factory(redis_server.url)
    subscriber, other = make(connect, recorder), connect()
    await subscriber.start()
    try:
        await subscriber.subscribe("lobby")

        redis_server.cli("CLIENT", "KILL", "TYPE", "pubsub")

        await recorder.until(lambda: recorder.resubscribed == 1)
        # Whole: what is published now arrives.
        await say(other, "lobby", b"after", node=b"n-other")
        await recorder.until(lambda: recorder.deliveries)
        assert [d.payload for d in recorder.deliveries] == [b"after"]
        assert (subscriber.reconnects, recorder.resubscribed) == (1, 1)
    finally:
        await subscriber.close()
        await other.aclose()


async def test_subscribe_not_confirmed_in_time_fails_with_backend_unavailable(
    server: fakeredis.FakeServer, recorder: Recorder
) -> None:
    # Never opened: nothing can confirm the subscription.
    subscriber = make(
        lambda: fakeredis.FakeAsyncRedis(server=server), recorder, subscribe_timeout=0.05
    )

    with pytest.raises(BackendUnavailable):
        await subscriber.subscribe("lobby")

    assert subscriber.rooms == {"lobby"}  # still wanted: a rebuild subscribes it
    await subscriber.close()


async def test_close_takes_the_subscription_down(subscriber: Subscriber) -> None:
    await subscriber.subscribe("lobby")

    await subscriber.close()

    assert not subscriber.up
    assert subscriber.rooms == {"lobby"}
