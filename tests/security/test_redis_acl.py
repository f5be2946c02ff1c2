"""A least-privilege Redis user is enough, and a user short of a right never
gets ready (issues 11 and 14; README, "Redis TLS and a least-privilege user").

The rule below is the README's, word for word but the password (a test
compares them): two
nodes running as that user deliver across nodes, announce joins and leaves,
and reap a killed node's members, and Redis records no denied command
(``ACL LOG`` stays empty), so the rule is proven sufficient. The same rule
serves a Redis Cluster (``--redis-cluster``): three nodes run as that user
on a local cluster of three masters with a replica each, deliver across
nodes in a room on every shard, and no server of the cluster logs a denial.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import pytest

from broker.bench.redis_cluster import LocalRedisCluster
from broker.bench.shards import room_slot
from tests.conftest import BrokerFactory, ClientFactory
from tests.support.processes import REPO, BrokerProcess, RedisServer

pytestmark = pytest.mark.redis

USER = "roomcast"
PASSWORD = "acl-test-password-1234"
NAMESPACE = "roomcast"  # the default --namespace


def rule_for(password: str) -> str:
    """The README's rule for the default namespace and a user named roomcast."""
    return (
        f"ACL SETUSER {USER} on >{password} resetkeys ~{NAMESPACE}:* ~{{{NAMESPACE}:* "
        f"resetchannels &{{{NAMESPACE}:* -@all +ping +spublish +ssubscribe +sunsubscribe "
        "+script|load +evalsha +hincrby +hget +hexists +rpush +ltrim +llen +lrange +pexpire "
        "+set +exists +del +sadd +srem +smembers +hset +hdel +hgetall +hlen +hscan +multi +exec "
        "+cluster|slots +command +asking"
    )


RULE = rule_for(PASSWORD)


def setuser(redis: RedisServer, rule: str) -> None:
    """Run an ``ACL SETUSER`` rule on ``redis`` (as its unrestricted default user)."""
    reply = redis.cli(*rule.split())
    assert reply == "OK", reply


def without(rule: str, word: str) -> str:
    """``rule`` without ``word``."""
    assert f" {word}" in rule
    return rule.replace(f" {word}", "")


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``check`` (another process's state) until it is true."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


@pytest.fixture
def acl_redis(redis_server: RedisServer) -> RedisServer:
    """A redis-server of the test's own with the README's user on it."""
    setuser(redis_server, RULE)
    return redis_server


def user_url(redis: RedisServer, user: str = USER) -> dict[str, str]:
    """The node's environment: the URL with the user and password (not a flag:
    flags show in ``ps``)."""
    return {"BROKER_REDIS_URL": f"redis://{user}:{PASSWORD}@127.0.0.1:{redis.port}/0"}


@pytest.fixture
def launched() -> Iterator[list[BrokerProcess]]:
    """Nodes that the test launches without waiting for readiness."""
    nodes: list[BrokerProcess] = []
    yield nodes
    for node in nodes:
        node.cleanup()


def test_the_readme_shows_this_rule() -> None:
    readme = (REPO / "README.md").read_text()
    rules = re.findall(r"^ACL SETUSER .*$", readme, flags=re.MULTILINE)
    assert rule_for("PASSWORD") in rules, rules


async def test_two_nodes_as_the_acl_user_deliver_and_announce_across_nodes(
    acl_redis: RedisServer, broker: BrokerFactory, wire: ClientFactory
) -> None:
    first, second = broker(env=user_url(acl_redis)), broker(env=user_url(acl_redis))
    a, b = await wire(first.url), await wire(second.url)
    await a.join("room")
    await b.join("room")
    await a.expect("joined", session=b.session)

    await b.say("room", "hello from B")
    await a.expect("message", body="hello from B")
    await a.say("room", "hello from A")
    await b.expect("message", body="hello from A")
    await b.request("leave", room="room")
    await a.expect("left", session=b.session)

    assert acl_redis.cli("ACL", "LOG") == ""


async def test_a_killed_nodes_members_are_reaped_by_a_node_of_the_acl_user(
    acl_redis: RedisServer, broker: BrokerFactory, wire: ClientFactory
) -> None:
    args = ("--node-timeout", "1.5")
    survivor = broker(*args, env=user_url(acl_redis))
    doomed = broker(*args, env=user_url(acl_redis))
    watcher, victim = await wire(survivor.url), await wire(doomed.url)
    await watcher.join("room")
    await victim.join("room")
    await watcher.expect("joined", session=victim.session)

    doomed.kill()  # SIGKILL: only the survivor can announce the left

    await watcher.expect("left", session=victim.session, timeout=10)
    assert acl_redis.cli("ACL", "LOG") == ""


@pytest.mark.parametrize(
    ("missing", "said"),
    [
        ("+spublish", "the canary publish failed (NoPermissionError (NOPERM)"),
        (f"&{{{NAMESPACE}:*", "redis refused a subscription (NoPermissionError (NOPERM)"),
    ],
    ids=["no-publish", "no-channels"],
)
def test_a_user_short_of_a_right_never_gets_ready_and_the_log_says_why(
    redis_server: RedisServer, launched: list[BrokerProcess], missing: str, said: str
) -> None:
    setuser(redis_server, without(RULE, missing))
    node = BrokerProcess(env=user_url(redis_server))
    launched.append(node.launch())

    wait_until(lambda: node.health()[0] != 0, timeout=15)  # listening

    assert said in node.log()
    # Readiness needs a canary back, which no retry brings: never 200 through
    # the canary timeout (3 s) and a few more rounds.
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        assert node.health()[0] == 503, node.log()
        time.sleep(0.2)  # the pace of the probe, not a wait for anything


@pytest.fixture
def acl_cluster() -> Iterator[LocalRedisCluster]:
    """A Redis Cluster of the test's own (3 masters, 1 replica each) with the
    README's user on every server: ACL SETUSER is per server, never
    replicated, and the default user stays for ``redis-cli --cluster create``."""
    with LocalRedisCluster(masters=3, replicas=1) as cluster:
        for server in cluster.servers:
            reply = cluster.cli(server.port, *RULE.split())
            assert reply == "OK", reply
        yield cluster


def cluster_env(cluster: LocalRedisCluster) -> dict[str, str]:
    """The node's environment: every server a seed, each URL with the user."""
    seeds = (f"redis://{USER}:{PASSWORD}@{s.host}:{s.port}" for s in cluster.servers)
    return {"BROKER_REDIS_CLUSTER": ",".join(seeds)}


def room_per_shard(cluster: LocalRedisCluster) -> list[str]:
    """One room name whose slot each master owns."""
    shards = cluster.shards()
    rooms: dict[int, str] = {}
    for index in range(1000):
        room = f"acl-{index}"
        owner = next(i for i, s in enumerate(shards) if s.owns(room_slot(NAMESPACE, room)))
        rooms.setdefault(owner, room)
        if len(rooms) == len(shards):
            return [rooms[i] for i in sorted(rooms)]
    raise AssertionError("no room name for some shard")


def acl_log(cluster: LocalRedisCluster) -> dict[int, str]:
    """``ACL LOG`` of every server that logged a denial, by port."""
    logs = {s.port: cluster.cli(s.port, "ACL", "LOG") for s in cluster.servers}
    return {port: log for port, log in logs.items() if log}


async def test_nodes_as_the_acl_user_deliver_across_nodes_on_every_shard_of_a_cluster(
    acl_cluster: LocalRedisCluster, broker: BrokerFactory, wire: ClientFactory
) -> None:
    nodes = [broker(env=cluster_env(acl_cluster)) for _ in range(3)]
    clients = [await wire(node.url) for node in nodes]
    rooms = room_per_shard(acl_cluster)

    a, b, c = clients
    for room in rooms:
        await a.join(room)
        await b.join(room)
        await a.expect("joined", room=room, session=b.session)
        await c.join(room)
        for listener in (a, b):
            await listener.expect("joined", room=room, session=c.session)

        await a.say(room, "from A")
        for listener in (b, c):
            await listener.expect("message", room=room, body="from A")
        await c.say(room, "from C")
        for listener in (a, b):
            await listener.expect("message", room=room, body="from C")
        await b.request("leave", room=room)
        for listener in (a, c):
            await listener.expect("left", room=room, session=b.session)

    assert len(rooms) == 3
    assert acl_log(acl_cluster) == {}


@pytest.mark.parametrize("missing", ["+cluster|slots", "+command"])
def test_a_cluster_user_short_of_a_topology_right_is_refused_at_start_with_the_reason(
    launched: list[BrokerProcess], missing: str
) -> None:
    with LocalRedisCluster(masters=3, replicas=1) as cluster:
        for server in cluster.servers:
            cluster.cli(server.port, *without(RULE, missing).split())
        node = BrokerProcess(env=cluster_env(cluster))
        launched.append(node.launch())
        assert node.process is not None

        code = node.process.wait(30)

    assert code == 2
    assert f"no permissions to run the '{missing[1:]}' command" in node.log()


async def test_a_room_whose_slot_migrates_is_served_as_the_acl_user(
    acl_cluster: LocalRedisCluster, broker: BrokerFactory, wire: ClientFactory
) -> None:
    # While the slot migrates, the room's keys are on the importing master:
    # redis-py follows ASK there with ASKING (the rule's +asking) for a
    # history read; once the slot has moved, says follow MOVED and the
    # subscribers follow the slot.
    first = broker(env=cluster_env(acl_cluster))
    second = broker(env=cluster_env(acl_cluster))
    a, b = await wire(first.url), await wire(second.url)
    room = room_per_shard(acl_cluster)[0]
    await a.join(room)
    await b.join(room)
    await a.expect("joined", room=room, session=b.session)
    await a.say(room, "before")
    await b.expect("message", room=room, body="before")
    slot = room_slot(NAMESPACE, room)
    source = acl_cluster.master_of_slot(slot)
    target = next(port for port in acl_cluster.master_ports() if port != source)

    _start_migration(acl_cluster, slot, source, target)
    history = await b.request("history", room=room)
    _finish_migration(acl_cluster, slot, target)
    await a.say(room, "after")
    await b.expect("message", room=room, body="after", timeout=10)

    assert history["type"] == "history", history
    assert [m["body"] for m in history["messages"]] == ["before"]
    assert acl_cluster.master_of_slot(slot) == target
    assert acl_log(acl_cluster) == {}


def _node_id(cluster: LocalRedisCluster, port: int) -> str:
    return cluster.cli(port, "CLUSTER", "MYID")


def _start_migration(cluster: LocalRedisCluster, slot: int, source: int, target: int) -> None:
    """Mark ``slot`` migrating from ``source`` to ``target`` and move its keys
    (as ``redis-cli --cluster reshard`` does), leaving the slot itself with
    ``source``: a command on its keys now meets ASK."""
    source_id, target_id = _node_id(cluster, source), _node_id(cluster, target)
    assert cluster.cli(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id) == "OK"
    assert cluster.cli(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id) == "OK"
    keys = cluster.cli(source, "CLUSTER", "GETKEYSINSLOT", str(slot), "1000").split()
    assert keys  # the room's position, history and presence
    reply = cluster.cli(source, "MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS", *keys)
    assert reply == "OK", reply


def _finish_migration(cluster: LocalRedisCluster, slot: int, target: int) -> None:
    """Give ``slot`` to ``target`` on every master (the end of a reshard)."""
    target_id = _node_id(cluster, target)
    for port in cluster.master_ports():
        assert cluster.cli(port, "CLUSTER", "SETSLOT", str(slot), "NODE", target_id) == "OK"
