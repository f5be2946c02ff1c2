"""Rooms' presence on a real redis-server (docs/HISTORY-PRESENCE.md,
"Presence"; the contract of ``Backend.track`` and ``Backend.presence``):
counts, users, truncation, idempotent scripts, order before later
publishes, expiry without a heartbeat, reaping of a dead node, a restart
with the same id, Redis restarted empty, and Redis away.

A real server only: fakeredis runs no Lua without ``lupa``. A node "crashes"
here by losing its heartbeat task (it is otherwise left as it was, as a
frozen or killed process leaves Redis).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis

from broker.backends import BackendUnavailable, Delivery
from broker.backends.base import Membership, PresenceHooks, PresenceRead
from broker.backends.redis import RedisBackend, redis_client_factory
from broker.backends.redis.envelope import PresenceKeys
from broker.backends.redis.presence_scripts import ADD, REMOVE
from tests.security.test_redis_acl import USER, rule_for
from tests.support.processes import RedisServer

pytestmark = pytest.mark.redis

NAMESPACE = "t"
TTL = 1.0  # the node timeout: heartbeats every 0.5 s


class Node:
    """One node's backend, what it delivered, and the memberships it was told
    were lost or revived."""

    def __init__(self, backend: RedisBackend, name: str) -> None:
        self.backend = backend
        self.name = name
        self.received: list[Delivery] = []
        self.lost: list[Membership] = []
        self.revived: list[Membership] = []
        self.read_on_revival: asyncio.Task[PresenceRead] | None = None
        self._changed = asyncio.Event()

    def deliver(self, batch: Sequence[Delivery]) -> None:
        self.received.extend(batch)
        self._changed.set()

    def on_lost(self, memberships: Sequence[Membership]) -> None:
        self.lost.extend(memberships)
        self._changed.set()

    def on_revived(self, memberships: Sequence[Membership]) -> None:
        # Read at once: what presence shows when the joined go out again.
        self.read_on_revival = asyncio.create_task(self.backend.presence("lobby", 1000))
        self.revived.extend(memberships)
        self._changed.set()

    def hooks(self) -> PresenceHooks:
        return PresenceHooks(self.on_lost, self.on_revived)

    def join(self, room: str, session: str, user: str | None = None) -> None:
        self.backend.track(Membership(room, session, user), member=True)

    def leave(self, room: str, session: str, user: str | None = None) -> None:
        self.backend.track(Membership(room, session, user), member=False)

    async def until(self, done: Callable[[], object], timeout: float = 10.0) -> None:
        """Wait until ``done()`` is true; checked after every callback."""
        async with asyncio.timeout(timeout):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    async def settle(self) -> None:
        """Wait until what this node queued reached Redis (a publish queued
        after it is settled once everything before it is)."""
        await self.backend.publish("settle", "", b"{}", history=False)

    def crash(self) -> None:
        """Stop this node's heartbeat, as a killed or frozen process would."""
        for task in asyncio.all_tasks():
            if task.get_name() == f"redis-presence-{self.name}":
                task.cancel()


NodeFactory = Callable[..., Awaitable[Node]]


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A plain client of the test's own redis-server, to look at the keys."""
    client = redis_client_factory(redis_server.url)()
    yield client
    await client.aclose()


@pytest.fixture
async def node_of(redis_server: RedisServer) -> AsyncIterator[NodeFactory]:
    """``await node_of(name=..., url=..., namespace=...)``: a started node on
    the test's redis-server."""
    started: list[Node] = []

    async def start(
        name: str | None = None, url: str | None = None, namespace: str = NAMESPACE
    ) -> Node:
        name = name or f"n-{len(started)}"
        backend = RedisBackend(
            redis_client_factory(url or redis_server.url, timeout=1.0),
            node=name,
            namespace=namespace,
            presence_ttl=TTL,
            canary_interval=0.2,
            canary_timeout=1.0,
        )
        node = Node(backend, name)
        await backend.start(node.deliver, node.hooks())
        started.append(node)
        return node

    yield start
    for node in started:
        await node.backend.close()


@pytest.fixture
async def node(node_of: NodeFactory) -> Node:
    return await node_of()


async def eventually(
    node: Node, check: Callable[[PresenceRead], bool], room: str = "lobby", timeout: float = 10.0
) -> PresenceRead:
    """Read ``room``'s presence until ``check`` holds (another node's
    heartbeat, or a Redis coming back, changes it); return that read."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                read = await node.backend.presence(room, 1000)
                if check(read):
                    return read
            except BackendUnavailable:
                pass
            await asyncio.sleep(0.05)  # the pace of the poll, not a wait for anything


async def look(node: Node, room: str = "lobby", limit: int = 1000) -> PresenceRead:
    """``room``'s presence as ``node`` reads it once what it queued reached Redis
    (as a node answers ``presence`` after the asker's ``joined`` was settled)."""
    await node.settle()
    return await node.backend.presence(room, limit)


def sessions(read: PresenceRead) -> set[str]:
    return {session for session, _ in read.members}


async def counts(redis: aioredis.Redis, room: str = "lobby") -> tuple[Any, ...]:
    """The room's three presence hashes, as Redis holds them."""
    keys = PresenceKeys.of(NAMESPACE, room)
    return (
        await redis.hgetall(keys.sessions),
        await redis.hgetall(keys.users),
        await redis.hgetall(keys.nodes),
    )


# --- counts, users, members ----------------------------------------------------


async def test_a_joined_session_is_listed_with_its_user(node: Node) -> None:
    node.join("lobby", "s-1", "alice")

    read = await look(node)

    assert read == PresenceRead(1, 1, [("s-1", "alice")], False)


async def test_an_anonymous_session_counts_in_count_but_not_in_users(node: Node) -> None:
    node.join("lobby", "s-1")

    read = await look(node)

    assert (read.count, read.users, list(read.members)) == (1, 0, [("s-1", None)])


async def test_two_sessions_of_one_user_count_as_one_user(node: Node) -> None:
    node.join("lobby", "s-1", "alice")
    node.join("lobby", "s-2", "alice")

    read = await look(node)

    assert (read.count, read.users) == (2, 1)


async def test_a_left_session_is_gone_with_its_user(node: Node) -> None:
    node.join("lobby", "s-1", "alice")
    node.join("lobby", "s-2", "bob")
    node.leave("lobby", "s-1", "alice")

    read = await look(node)

    assert (read.count, read.users, list(read.members)) == (1, 1, [("s-2", "bob")])


async def test_a_user_stays_counted_while_one_of_their_sessions_remains(node: Node) -> None:
    node.join("lobby", "s-1", "alice")
    node.join("lobby", "s-2", "alice")
    node.leave("lobby", "s-1", "alice")

    read = await look(node)

    assert (read.count, read.users) == (1, 1)


async def test_an_empty_room_leaves_no_key(node: Node, redis: aioredis.Redis) -> None:
    node.join("lobby", "s-1", "alice")
    node.leave("lobby", "s-1", "alice")
    await node.settle()

    assert await counts(redis) == ({}, {}, {})


async def test_sessions_on_every_node_are_listed(node_of: NodeFactory) -> None:
    a, b = await node_of(), await node_of()
    a.join("lobby", "s-a", "alice")
    b.join("lobby", "s-b", "bob")
    await b.settle()

    read = await look(a)

    assert sessions(read) == {"s-a", "s-b"}
    assert read.users == 2


async def test_members_stop_at_the_limit_with_truncated(node: Node) -> None:
    for i in range(300):  # past the listpack size: HSCAN pages a real hash table
        node.join("lobby", f"s-{i}", f"u-{i % 7}")

    read = await look(node, limit=100)

    assert (read.count, read.users, read.truncated) == (300, 7, True)
    assert len(sessions(read)) == len(read.members) == 100


async def test_a_room_of_exactly_the_limit_is_not_truncated(node: Node) -> None:
    for i in range(10):
        node.join("lobby", f"s-{i}")

    read = await look(node, limit=10)

    assert (read.count, len(read.members), read.truncated) == (10, 10, False)


async def test_a_room_nobody_is_in_reads_empty(node: Node) -> None:
    assert await look(node, "nobody") == PresenceRead(0, 0, [], False)


# --- the scripts are idempotent ------------------------------------------------


async def add(redis: aioredis.Redis, node: bytes, session: bytes, user: bytes) -> Any:
    keys = PresenceKeys.of(NAMESPACE, "lobby")
    words: Any = (*keys, node, 60_000, session, user)
    return await redis.eval(ADD.source.decode(), 3, *words)


async def remove(redis: aioredis.Redis, node: bytes, session: bytes) -> Any:
    keys = PresenceKeys.of(NAMESPACE, "lobby")
    words: Any = (*keys, node, session)
    return await redis.eval(REMOVE.source.decode(), 3, *words)


async def test_adding_a_session_twice_changes_no_count(redis: aioredis.Redis) -> None:
    await add(redis, b"n-a", b"s-1", b"alice")
    before = await counts(redis)

    assert await add(redis, b"n-a", b"s-1", b"alice") == 0
    assert (
        await counts(redis)
        == before
        == (
            {b"s-1": b"alice"},
            {b"alice": b"1"},
            {b"n-a": b"1"},
        )
    )


async def test_removing_a_session_that_is_not_there_changes_no_count(
    redis: aioredis.Redis,
) -> None:
    await add(redis, b"n-a", b"s-1", b"alice")
    before = await counts(redis)

    assert await remove(redis, b"n-a", b"s-2") == 0
    assert await counts(redis) == before


async def test_removing_a_session_twice_leaves_no_negative_count(redis: aioredis.Redis) -> None:
    await add(redis, b"n-a", b"s-1", b"alice")
    await remove(redis, b"n-a", b"s-1")

    assert await remove(redis, b"n-a", b"s-1") == 0
    assert await counts(redis) == ({}, {}, {})


# --- order ---------------------------------------------------------------------


async def test_a_join_is_in_presence_before_a_publish_made_after_it(
    node_of: NodeFactory,
) -> None:
    a, b = await node_of(), await node_of()
    await b.backend.subscribe("lobby")
    seen: list[set[str]] = []

    async def read_on_arrival() -> None:
        await b.until(lambda: b.received)
        seen.append(sessions(await b.backend.presence("lobby", 1000)))

    reader = asyncio.create_task(read_on_arrival())
    a.join("lobby", "s-1", "alice")
    a.backend.publish("lobby", "s-1", b'{"type":"joined"}', history=False)
    await reader

    assert seen == [{"s-1"}]


# --- expiry, reaping, restarts --------------------------------------------------


async def test_presence_outlives_its_ttl_while_the_heartbeat_runs(node: Node) -> None:
    node.join("lobby", "s-1", "alice")

    await asyncio.sleep(3 * TTL)  # time passing is what is under test

    assert (await look(node)).count == 1


async def test_presence_expires_without_a_heartbeat(node: Node, redis: aioredis.Redis) -> None:
    node.join("lobby", "s-1", "alice")
    await node.settle()

    node.crash()

    await eventually(node, lambda read: read.count == 0)
    assert await counts(redis) == ({}, {}, {})


async def test_a_room_that_expired_under_a_live_node_is_written_again(
    node: Node, redis: aioredis.Redis
) -> None:
    node.join("lobby", "s-1", "alice")
    await node.settle()

    await redis.delete(*PresenceKeys.of(NAMESPACE, "lobby"))

    read = await eventually(node, lambda read: read.count == 1)
    assert list(read.members) == [("s-1", "alice")]


async def test_a_dead_nodes_sessions_are_removed_before_their_left(
    node_of: NodeFactory,
) -> None:
    survivor, doomed = await node_of(), await node_of()
    survivor.join("lobby", "s-a", "alice")
    doomed.join("lobby", "s-b", "bob")
    await doomed.settle()

    doomed.crash()
    await survivor.until(lambda: survivor.lost, timeout=10 * TTL)

    read = await look(survivor)
    assert survivor.lost == [Membership("lobby", "s-b", "bob")]
    assert (sessions(read), read.users) == ({"s-a"}, 1)


async def test_a_node_taken_for_dead_is_in_presence_again_before_its_joined(
    node: Node, redis: aioredis.Redis
) -> None:
    node.join("lobby", "s-1", "alice")
    await node.settle()
    # What a survivor does to a node whose heartbeat it saw expire.
    await redis.set(f"{NAMESPACE}:reaped:{node.name}", b"n-other")
    await redis.srem(f"{NAMESPACE}:nodes", node.name)
    await remove(redis, node.name.encode(), b"s-1")

    await node.until(lambda: node.revived, timeout=10 * TTL)

    assert node.read_on_revival is not None
    read = await node.read_on_revival
    assert node.revived == [Membership("lobby", "s-1", "alice")]
    assert list(read.members) == [("s-1", "alice")]


async def test_a_restart_with_the_same_id_removes_what_the_last_run_left(
    node_of: NodeFactory,
) -> None:
    first_run = await node_of(name="n-same")
    first_run.join("lobby", "s-old", "alice")
    await first_run.settle()
    first_run.crash()

    second_run = await node_of(name="n-same")

    read = await look(second_run)
    assert second_run.lost == [Membership("lobby", "s-old", "alice")]
    assert read == PresenceRead(0, 0, [], False)


async def test_a_clean_close_removes_the_nodes_sessions(node_of: NodeFactory) -> None:
    staying, closing = await node_of(), await node_of()
    staying.join("lobby", "s-a", "alice")
    closing.join("lobby", "s-b", "bob")
    await closing.settle()

    await closing.backend.close()

    assert sessions(await look(staying)) == {"s-a"}


# --- Redis away ------------------------------------------------------------------


async def test_presence_raises_backend_unavailable_when_redis_is_killed(
    node: Node, redis_server: RedisServer
) -> None:
    node.join("lobby", "s-1", "alice")
    await node.settle()

    redis_server.kill()

    with pytest.raises(BackendUnavailable):
        await node.backend.presence("lobby", 1000)


async def test_presence_is_rebuilt_after_redis_restarts_empty(
    node: Node, redis_server: RedisServer
) -> None:
    node.join("lobby", "s-1", "alice")
    node.join("lobby", "s-2")
    await node.settle()

    redis_server.kill()
    redis_server.start()  # same port, no data

    read = await eventually(node, lambda read: read.count == 2)
    assert sorted(read.members) == [("s-1", "alice"), ("s-2", None)]


async def test_changes_refused_while_redis_was_away_are_written_when_it_is_back(
    node_of: NodeFactory, redis_server: RedisServer
) -> None:
    redis_server.cli("ACL", "SETUSER", "u", "on", ">pw", "~*", "&*", "+@all")
    writer = await node_of(url=f"redis://u:pw@127.0.0.1:{redis_server.port}/0")
    reader = await node_of()
    writer.join("lobby", "s-1", "alice")
    await writer.settle()

    redis_server.cli("ACL", "SETUSER", "u", "-evalsha")  # the scripts are refused
    writer.leave("lobby", "s-1", "alice")
    writer.join("lobby", "s-2", "bob")
    await writer.settle()
    assert sessions(await look(reader)) == {"s-1"}
    redis_server.cli("ACL", "SETUSER", "u", "+evalsha")

    read = await eventually(reader, lambda read: sessions(read) == {"s-2"})
    assert (read.count, read.users) == (1, 1)


# --- least privilege ---------------------------------------------------------------


async def test_the_readmes_acl_user_may_do_everything_presence_needs(
    node_of: NodeFactory, redis_server: RedisServer
) -> None:
    password = "presence-acl-password-1234"
    assert redis_server.cli(*rule_for(password).split()) == "OK"
    url = f"redis://{USER}:{password}@127.0.0.1:{redis_server.port}/0"
    survivor = await node_of(name="n-acl-a", url=url, namespace="roomcast")
    doomed = await node_of(name="n-acl-b", url=url, namespace="roomcast")
    for i in range(200):  # a real hash table: the read pages with HSCAN
        survivor.join("lobby", f"s-{i}", "alice")
    doomed.join("lobby", "s-b", "bob")
    survivor.leave("lobby", "s-0", "alice")
    assert (await look(survivor, limit=10)).truncated

    doomed.crash()  # reaped: its sessions removed by the survivor
    await survivor.until(lambda: survivor.lost, timeout=10 * TTL)
    await node_of(name="n-acl-b", url=url, namespace="roomcast")  # its previous run cleaned up
    await survivor.backend.close()  # withdrawn

    assert redis_server.cli("ACL", "LOG") == ""
