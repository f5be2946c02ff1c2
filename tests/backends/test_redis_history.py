"""Positions and history on a real redis-server (docs/HISTORY-PRESENCE.md,
"Positions", "Options", "No lost messages inside the cluster"): the publish
script's semantics, history reads, epoch rotation, delivery back to the
publisher, and ``resubscribed`` after an interrupted subscription.

A real server only: fakeredis runs no Lua without ``lupa``. Expiry is shown
by the TTLs the script sets, and "expired" by deleting the key, so no test
waits for time to pass.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest
import redis.asyncio as aioredis

from broker.backends import BackendUnavailable, Delivery
from broker.backends.base import Membership, Position, PresenceHooks
from broker.backends.redis import RedisBackend, redis_client_factory
from broker.backends.redis import history as history_module
from broker.backends.redis.envelope import RoomKeys
from broker.backends.redis.history import REFRESH_FRACTION
from broker.backends.redis.scripts import trim_slack
from protocol import with_position
from tests.security.test_redis_acl import USER, rule_for
from tests.support.processes import RedisServer

pytestmark = pytest.mark.redis

SIZE = 5
TTL = 32.0
META_TTL = 300.0
REFRESH = TTL * 1000 / REFRESH_FRACTION
"""Milliseconds added to both TTLs: expiry is refreshed at most this often."""


def frame(body: str) -> bytes:
    """A ``message`` frame without a position, as the node encodes it."""
    return b'{"type":"message","room":"lobby","from":"s-1","body":"%s"}' % body.encode()


class Node:
    """One node's backend, what it delivered, and its ``resubscribed`` calls."""

    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend
        self.received: list[Delivery] = []
        self.resubscribed = 0
        self._changed = asyncio.Event()

    def deliver(self, batch: Sequence[Delivery]) -> None:
        self.received.extend(batch)
        self._changed.set()

    def on_resubscribed(self) -> None:
        self.resubscribed += 1
        self._changed.set()

    def hooks(self) -> PresenceHooks:
        return PresenceHooks(self._ignore, self._ignore, self.on_resubscribed)

    @staticmethod
    def _ignore(memberships: Sequence[Membership]) -> None:
        """Crash recovery is not under test here."""

    async def until(self, done: Callable[[], object], timeout: float = 10.0) -> None:
        """Wait until ``done()`` is true; checked after every callback."""
        async with asyncio.timeout(timeout):
            while not done():
                self._changed.clear()
                await self._changed.wait()


NodeFactory = Callable[..., Awaitable[Node]]


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A plain client of the test's own redis-server, to look at the keys."""
    client = redis_client_factory(redis_server.url)()
    yield client
    await client.aclose()


@pytest.fixture
async def node_of(redis_server: RedisServer) -> AsyncIterator[NodeFactory]:
    """``await node_of(**options)``: a started node on the test's redis-server."""
    started: list[Node] = []

    async def start(**options: float) -> Node:
        settings: dict[str, float] = {
            "history_size": SIZE,
            "history_ttl": TTL,
            "history_meta_ttl": META_TTL,
            "canary_interval": 0.2,
            "canary_timeout": 1.0,
        }
        settings.update(options)
        backend = RedisBackend(
            redis_client_factory(redis_server.url),
            node=f"n-{len(started)}",
            namespace="t",
            **settings,  # type: ignore[arg-type]
        )
        node = Node(backend)
        await backend.start(node.deliver, node.hooks())
        started.append(node)
        return node

    yield start
    for node in started:
        await node.backend.close()


class Clock:
    """The monotonic clock the history module reads, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Stands in for the history module's clock (only that module's)."""
    fake = Clock()
    monkeypatch.setattr(history_module, "monotonic", fake)
    return fake


@pytest.fixture
async def node(node_of: NodeFactory) -> Node:
    return await node_of()


async def say(node: Node, room: str, body: str) -> Position | None:
    return await node.backend.publish(room, "s-1", frame(body), 1.5)


# --- the publish script --------------------------------------------------------


async def test_offsets_go_1_2_3_in_each_room_in_one_epoch(node: Node) -> None:
    lobby = [await say(node, "lobby", str(i)) for i in range(3)]
    other = await say(node, "other", "x")

    assert [p.offset for p in lobby if p] == [1, 2, 3]
    assert len({p.epoch for p in lobby if p}) == 1
    assert other is not None and other.offset == 1
    assert lobby[0] is not None and other.epoch != lobby[0].epoch


async def test_the_frame_carries_exactly_the_bytes_of_with_position(node: Node) -> None:
    await node.backend.subscribe("lobby")

    position = await say(node, "lobby", "hi")

    assert position is not None
    expected = with_position(frame("hi"), position.offset, position.epoch)
    await node.until(lambda: node.received)
    assert node.received == [Delivery("lobby", "s-1", expected, 1.5, 1, position.epoch)]
    read = await node.backend.read_history("lobby")
    assert read.messages == [(1, expected)]


async def test_a_publish_is_delivered_back_to_the_publishing_node_in_offset_order(
    node_of: NodeFactory,
) -> None:
    publisher, listener = await node_of(), await node_of()
    for each in (publisher, listener):
        await each.backend.subscribe("lobby")

    for i in range(20):
        publisher.backend.publish("lobby", "s-1", frame(str(i)))
    await say(publisher, "lobby", "last")

    for each in (publisher, listener):
        await each.until(lambda each=each: len(each.received) == 21)  # type: ignore[misc]
        assert [d.offset for d in each.received] == list(range(1, 22))


async def test_reads_give_exactly_the_last_history_size_messages(node: Node) -> None:
    for i in range(SIZE + 3):
        await say(node, "lobby", str(i))

    read = await node.backend.read_history("lobby")

    assert [offset for offset, _ in read.messages] == list(range(4, SIZE + 4))
    assert read.offset == SIZE + 3


async def test_the_kept_history_grows_past_its_size_by_the_slack_then_is_trimmed_to_it(
    node: Node, redis: aioredis.Redis
) -> None:
    history = RoomKeys.of("t", "lobby").history
    lengths = []
    for i in range(2 * (SIZE + trim_slack(SIZE))):
        await say(node, "lobby", str(i))
        lengths.append(await redis.llen(history))

    assert max(lengths) == SIZE + trim_slack(SIZE)
    assert lengths[SIZE + trim_slack(SIZE)] == SIZE  # the say past the slack trims


async def test_a_node_with_a_lower_history_size_trims_the_history_to_it(
    node_of: NodeFactory, redis: aioredis.Redis
) -> None:
    larger, smaller = await node_of(), await node_of(history_size=2)
    for i in range(SIZE):
        await say(larger, "lobby", str(i))

    await say(smaller, "lobby", "last")

    assert await redis.llen(RoomKeys.of("t", "lobby").history) == 2
    read = await smaller.backend.read_history("lobby")
    assert [offset for offset, _ in read.messages] == [SIZE, SIZE + 1]


async def pttls(redis: aioredis.Redis) -> tuple[int, int]:
    """The milliseconds the lobby's history and position have left."""
    keys = RoomKeys.of("t", "lobby")
    return await redis.pttl(keys.history), await redis.pttl(keys.position)


async def test_history_expires_ttl_and_the_position_meta_ttl_after_the_last_message(
    node: Node, redis: aioredis.Redis
) -> None:
    await say(node, "lobby", "a")

    history_ttl, position_ttl = await pttls(redis)

    # Refreshed at most every REFRESH ms, so set to TTL + REFRESH: never less
    # than TTL after a message (README, "Delivery guarantees").
    assert TTL * 1000 < history_ttl <= TTL * 1000 + REFRESH
    assert META_TTL * 1000 < position_ttl <= META_TTL * 1000 + REFRESH


async def test_a_say_within_the_refresh_interval_leaves_the_expiry_as_it_was(
    node: Node, redis: aioredis.Redis, clock: Clock
) -> None:
    await say(node, "lobby", "a")
    keys = RoomKeys.of("t", "lobby")
    await redis.pexpire(keys.history, 20_000)
    await redis.pexpire(keys.position, 20_000)
    clock.now += REFRESH / 1000 * 0.9

    await say(node, "lobby", "b")

    # Still at least TTL after "b": 20 s is what Redis had left of TTL + REFRESH.
    assert all(ttl <= 20_000 for ttl in await pttls(redis))


async def test_a_say_once_the_refresh_interval_passed_sets_the_expiry_again(
    node: Node, redis: aioredis.Redis, clock: Clock
) -> None:
    await say(node, "lobby", "a")
    keys = RoomKeys.of("t", "lobby")
    await redis.pexpire(keys.history, 20_000)
    await redis.pexpire(keys.position, 20_000)
    clock.now += REFRESH / 1000

    await say(node, "lobby", "b")

    history_ttl, position_ttl = await pttls(redis)
    assert TTL * 1000 < history_ttl <= TTL * 1000 + REFRESH
    assert META_TTL * 1000 < position_ttl <= META_TTL * 1000 + REFRESH


async def test_a_history_created_between_refreshes_gets_its_expiry(
    node: Node, redis: aioredis.Redis
) -> None:
    await say(node, "lobby", "a")
    await redis.delete(RoomKeys.of("t", "lobby").history)  # the history expired

    await say(node, "lobby", "b")

    history_ttl, _ = await pttls(redis)
    assert TTL * 1000 < history_ttl <= TTL * 1000 + REFRESH


async def test_the_epoch_outlives_expired_messages_within_the_meta_ttl(
    node: Node, redis: aioredis.Redis
) -> None:
    first = await say(node, "lobby", "a")
    await redis.delete(RoomKeys.of("t", "lobby").history)  # the history expired

    later = await say(node, "lobby", "b")

    assert first is not None and later == Position(2, first.epoch)
    read = await node.backend.read_history("lobby")
    assert [offset for offset, _ in read.messages] == [2]


async def test_a_new_epoch_starts_at_1_once_the_position_expired(
    node: Node, redis: aioredis.Redis
) -> None:
    first = await say(node, "lobby", "a")
    await redis.delete(RoomKeys.of("t", "lobby").position)  # the position expired

    later = await say(node, "lobby", "b")

    assert first is not None and later is not None
    assert later.offset == 1 and later.epoch != first.epoch
    read = await node.backend.read_history("lobby")
    assert [offset for offset, _ in read.messages] == [1]


async def test_a_say_that_starts_a_new_epoch_carries_it_in_its_frame(
    node: Node, redis: aioredis.Redis
) -> None:
    await node.backend.subscribe("lobby")
    await say(node, "lobby", "a")
    await redis.delete(RoomKeys.of("t", "lobby").position)  # the position expired

    later = await say(node, "lobby", "b")

    assert later is not None
    expected = with_position(frame("b"), 1, later.epoch)
    await node.until(lambda: len(node.received) == 2)
    assert node.received[1] == Delivery("lobby", "s-1", expected, 1.5, 1, later.epoch)
    assert (await node.backend.read_history("lobby")).messages == [(1, expected)]


async def test_an_epoch_started_for_a_lost_one_is_a_well_formed_new_epoch(
    node: Node, redis: aioredis.Redis
) -> None:
    epochs = []
    for _ in range(3):
        position = await say(node, "lobby", "a")
        assert position is not None
        epochs.append(position.epoch)
        await redis.delete(RoomKeys.of("t", "lobby").position)  # the position expired

    assert len(set(epochs)) == 3
    assert all(re.fullmatch("[A-Za-z0-9-]{1,64}", epoch) for epoch in epochs)


async def test_two_nodes_that_find_the_same_epoch_lost_start_two_different_ones(
    node_of: NodeFactory, redis: aioredis.Redis
) -> None:
    first, second = await node_of(), await node_of()
    old = await say(first, "lobby", "a")
    assert old is not None and await say(second, "lobby", "b") == Position(2, old.epoch)
    position = RoomKeys.of("t", "lobby").position
    await redis.delete(position)
    started = await say(first, "lobby", "c")
    await redis.delete(position)

    again = await say(second, "lobby", "d")

    assert started is not None and again is not None
    assert len({old.epoch, started.epoch, again.epoch}) == 3
    assert again.offset == 1


async def test_a_node_new_to_a_room_continues_the_rooms_epoch(node_of: NodeFactory) -> None:
    first, second = await node_of(), await node_of()
    started = await say(first, "lobby", "a")

    continued = await say(second, "lobby", "b")

    assert started is not None and continued == Position(2, started.epoch)


async def test_an_epoch_another_node_started_is_taken_by_a_node_remembering_an_older_one(
    node_of: NodeFactory, redis: aioredis.Redis
) -> None:
    first, other = await node_of(), await node_of()
    old = await say(first, "lobby", "a")
    await redis.delete(RoomKeys.of("t", "lobby").position)  # the position expired
    started = await say(other, "lobby", "b")

    later = await say(first, "lobby", "c")

    assert old is not None and started is not None and started.epoch != old.epoch
    assert later == Position(2, started.epoch)
    assert await redis.hkeys(RoomKeys.of("t", "lobby").position) == [started.epoch.encode()]


async def test_a_new_epoch_starts_at_1_after_flushall(node: Node, redis: aioredis.Redis) -> None:
    first = await say(node, "lobby", "a")
    await redis.flushall()

    later = await say(node, "lobby", "b")

    assert first is not None and later is not None
    assert later.offset == 1 and later.epoch != first.epoch


async def test_a_publish_after_script_flush_loads_the_script_again(
    node: Node, redis: aioredis.Redis
) -> None:
    await say(node, "lobby", "a")
    await redis.script_flush()

    batch = [node.backend.publish("lobby", "s-1", frame(str(i))) for i in range(3)]

    positions = await asyncio.gather(*batch)
    assert [p.offset for p in positions if p] == [2, 3, 4]


async def test_an_announcement_gets_no_position_and_touches_no_key(
    node: Node, redis: aioredis.Redis
) -> None:
    await node.backend.subscribe("lobby")

    position = await node.backend.publish("lobby", "s-1", b'{"type":"joined"}', history=False)

    assert position is None
    await node.until(lambda: node.received)
    assert (node.received[0].offset, node.received[0].epoch) == (0, "")
    assert await redis.exists(*RoomKeys.of("t", "lobby")[:2]) == 0


async def test_without_history_a_message_gets_no_position(
    node_of: NodeFactory, redis: aioredis.Redis
) -> None:
    node = await node_of(history_size=0)
    await node.backend.subscribe("lobby")

    assert node.backend.history_size == 0
    assert await say(node, "lobby", "a") is None
    await node.until(lambda: node.received)
    assert node.received[0].payload == frame("a")
    assert await redis.exists(*RoomKeys.of("t", "lobby")[:2]) == 0


async def test_a_message_redis_did_not_take_fails_with_backend_unavailable(
    node: Node, redis_server: RedisServer
) -> None:
    redis_server.kill()

    with pytest.raises(BackendUnavailable):
        await asyncio.wait_for(say(node, "lobby", "lost"), 10)


# --- read_history and rotate_epoch -------------------------------------------------


async def test_a_first_read_creates_the_position_that_the_next_message_continues(
    node: Node,
) -> None:
    read = await node.backend.read_history("lobby")

    position = await say(node, "lobby", "a")

    assert read.offset == 0 and read.messages == [] and read.epoch
    assert position == Position(1, read.epoch)


@pytest.mark.parametrize(
    ("after", "before", "limit", "offsets"),
    [
        (0, None, None, [4, 5, 6, 7, 8]),
        (5, None, None, [6, 7, 8]),
        (0, 7, None, [4, 5, 6]),
        (0, None, 2, [7, 8]),
        (0, 7, 2, [5, 6]),
        (4, 7, 10, [5, 6]),
        (8, None, None, []),
        (0, 4, None, []),
        (0, None, 0, []),
    ],
)
async def test_read_history_keeps_after_before_and_the_newest_limit(
    node: Node, after: int, before: int | None, limit: int | None, offsets: list[int]
) -> None:
    for i in range(8):
        await say(node, "lobby", str(i))

    read = await node.backend.read_history("lobby", after, before, limit)

    assert [offset for offset, _ in read.messages] == offsets
    assert read.offset == 8
    assert all(
        payload == with_position(frame(str(offset - 1)), offset, read.epoch)
        for offset, payload in read.messages
    )


async def test_rotate_epoch_drops_the_history_of_the_stale_epoch(node: Node) -> None:
    first = await say(node, "lobby", "a")
    assert first is not None

    await node.backend.rotate_epoch("lobby", first.epoch)

    later = await say(node, "lobby", "b")
    assert later is not None and later.offset == 1 and later.epoch != first.epoch
    assert [offset for offset, _ in (await node.backend.read_history("lobby")).messages] == [1]


async def test_rotate_epoch_keeps_a_room_already_in_another_epoch(node: Node) -> None:
    first = await say(node, "lobby", "a")

    await node.backend.rotate_epoch("lobby", "e-not-this-one")

    assert first is not None
    assert await say(node, "lobby", "b") == Position(2, first.epoch)


async def test_history_reads_fail_with_backend_unavailable_when_redis_is_away(
    node: Node, redis_server: RedisServer
) -> None:
    redis_server.kill()

    with pytest.raises(BackendUnavailable):
        await node.backend.read_history("lobby")
    with pytest.raises(BackendUnavailable):
        await node.backend.rotate_epoch("lobby", "e-1")


# --- resubscribed ------------------------------------------------------------------


async def test_resubscribed_once_the_rooms_are_back_after_client_kill_type_pubsub(
    node_of: NodeFactory, redis_server: RedisServer
) -> None:
    listener, publisher = await node_of(), await node_of()
    await listener.backend.subscribe("lobby")

    redis_server.cli("CLIENT", "KILL", "TYPE", "pubsub")

    await listener.until(lambda: listener.resubscribed == 1)
    await say(publisher, "lobby", "after")
    await listener.until(lambda: listener.received)
    assert listener.resubscribed == 1


async def test_resubscribed_once_after_a_deaf_subscription_is_rebuilt(node: Node) -> None:
    await node.backend.subscribe("lobby")
    subscriber = node.backend._subscriber
    assert subscriber is not None
    reading = subscriber._read_batch

    async def silent(pubsub: object, batch: object) -> None:
        await asyncio.Event().wait()  # the rebuild cancels this reader

    # Deaf: the subscription stays open but nothing arrives through it, so
    # the canary asks for a rebuild (a real deaf connection cannot be made
    # on demand: Redis either delivers or closes).
    subscriber._read_batch = silent  # type: ignore[method-assign]

    # Nothing arrives, so no callback wakes node.until: poll with a deadline.
    async with asyncio.timeout(10):
        while node.backend.stats()["canary_misses"] < 1:
            await asyncio.sleep(0.05)
    subscriber._read_batch = reading  # type: ignore[method-assign]

    await node.until(lambda: node.resubscribed >= 1)
    assert node.resubscribed == 1


# --- least privilege ---------------------------------------------------------------


async def test_the_readmes_acl_user_may_do_everything_history_needs(
    redis_server: RedisServer,
) -> None:
    password = "history-acl-password-1234"
    assert redis_server.cli(*rule_for(password).split()) == "OK"
    url = f"redis://{USER}:{password}@127.0.0.1:{redis_server.port}/0"
    node, smaller = (
        Node(RedisBackend(redis_client_factory(url), node=f"n-acl-{size}", history_size=size))
        for size in (SIZE, 2)
    )
    try:
        for each in (node, smaller):
            await each.backend.start(each.deliver, each.hooks())
        await node.backend.subscribe("lobby")
        await node.backend.read_history("lobby")
        says = SIZE + trim_slack(SIZE) + 1  # the last one trims the history (LTRIM)
        for i in range(says):
            await say(node, "lobby", str(i))
        await node.backend.publish("lobby", "s-1", b'{"type":"joined"}', history=False)
        await node.until(lambda: len(node.received) == says + 1)
        await say(smaller, "lobby", "x")  # a lowered size trims (LTRIM)
        assert redis_server.cli("LLEN", RoomKeys.of("roomcast", "lobby").history.decode()) == "2"
        await node.backend.read_history("lobby", 0, 5, 1)
        await node.backend.rotate_epoch("lobby", "e-1")
        node.backend.unsubscribe("lobby")
        assert node.backend.healthy()
    finally:
        for each in (node, smaller):
            await each.backend.close()
    assert redis_server.cli("ACL", "LOG") == ""
