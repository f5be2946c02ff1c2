"""``deploy/local-cluster``: nginx, rendered from the template compose uses,
in front of real broker nodes on one real Redis, or with ``--redis-cluster``
on a real Redis Cluster (3 masters with a replica each)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.bench.shards import room_slot
from tests.conftest import ClientFactory
from tests.deploy.cluster import LocalCluster, pid_alive
from tests.deploy.conftest import ClusterFactory
from tests.deploy.tools import require_tool
from tests.support.processes import http_get

pytestmark = pytest.mark.redis

NODES = {"node-1", "node-2", "node-3"}


def sent_by(session: str) -> dict[str, Any]:
    """The ``from`` field to expect (a Python keyword, so passed unpacked)."""
    return {"from": session}


def _content_type(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.headers["Content-Type"])


def test_lb_serves_the_demo_page(cluster: LocalCluster) -> None:
    status, body = http_get(cluster.http)

    assert status == 200
    assert b'<script type="module" src="app.js"></script>' in body
    assert _content_type(cluster.http) == "text/html"


def test_lb_serves_the_sdk_as_javascript(cluster: LocalCluster) -> None:
    # Browsers refuse to run an ES module served with another type.
    assert _content_type(cluster.http + "roomcast.js") == "text/javascript"


def test_healthz_through_the_lb_answers_for_a_node(cluster: LocalCluster) -> None:
    status, body = http_get(cluster.http + "healthz")

    assert status == 200
    health = json.loads(body)
    assert health["status"] == "ok"
    assert health["node"] in NODES


async def test_clients_through_the_lb_land_on_different_nodes(
    cluster: LocalCluster, wire: ClientFactory
) -> None:
    # least_conn: each new connection goes to a node with the fewest open ones.
    clients = [await wire(cluster.ws) for _ in range(3)]

    assert {client.welcome["node"] for client in clients} == NODES


async def test_clients_on_different_nodes_talk_through_the_lb(
    cluster: LocalCluster, wire: ClientFactory
) -> None:
    alice = await wire(cluster.ws)
    # Closed clients of earlier tests may still count in nginx for a moment.
    for _ in range(5):
        bob = await wire(cluster.ws)
        if bob.welcome["node"] != alice.welcome["node"]:
            break
    assert alice.welcome["node"] != bob.welcome["node"]
    await alice.join("across")
    await bob.join("across")
    await alice.expect("joined", room="across", session=bob.session)

    await alice.say("across", {"name": "alice", "text": "hi bob"})
    await bob.say("across", {"name": "bob", "text": "hi alice"})

    heard = await bob.expect("message", room="across", **sent_by(alice.session))
    assert heard["body"] == {"name": "alice", "text": "hi bob"}
    heard = await alice.expect("message", room="across", **sent_by(bob.session))
    assert heard["body"] == {"name": "bob", "text": "hi alice"}


async def test_lb_sends_new_clients_past_a_stopped_node(
    new_cluster: ClusterFactory, wire: ClientFactory
) -> None:
    running = new_cluster()
    victim = await wire(running.ws)
    stopped = victim.welcome["node"]

    os.kill(running.node_pid(stopped), signal.SIGTERM)
    await victim.wait_closed()
    assert victim.ws.close_code == 1001
    # The stopped node refuses connections: nginx tries the next one and
    # leaves it out, so no handshake fails and none lands there.
    clients = [await wire(running.ws) for _ in range(4)]

    assert {client.welcome["node"] for client in clients} == NODES - {stopped}


async def test_a_client_moved_by_a_stopped_node_hears_its_room_again(
    new_cluster: ClusterFactory, wire: ClientFactory
) -> None:
    running = new_cluster()
    mover, stayer = await wire(running.ws), await wire(running.ws)
    for client in (mover, stayer):
        await client.join("moving")

    os.kill(running.node_pid(mover.welcome["node"]), signal.SIGTERM)
    await mover.wait_closed()
    moved = await wire(running.ws)
    await moved.join("moving")
    await stayer.say("moving", "still there?")

    assert moved.welcome["node"] not in {mover.welcome["node"]}
    heard = await moved.expect("message", room="moving", **sent_by(stayer.session))
    assert heard["body"] == "still there?"


def test_sigterm_stops_every_process_it_started(new_cluster: ClusterFactory) -> None:
    running = new_cluster(nodes=2)
    started = dict(running.pids)
    assert set(started) == {"redis", "node-1", "node-2", "lb"}

    exit_code = running.stop()

    assert exit_code == 0
    assert [name for name, pid in started.items() if pid_alive(pid)] == []


def test_a_stopped_node_is_reported_and_the_rest_keep_serving(
    new_cluster: ClusterFactory,
) -> None:
    running = new_cluster(nodes=2)

    os.kill(running.node_pid("node-1"), signal.SIGTERM)
    line = running.wait_for_line("exited   node-1")

    assert line.rstrip().endswith("with 0")
    _wait_for_health_from(running, "node-2")
    assert running.process is not None and running.process.poll() is None


def _wait_for_health_from(running: LocalCluster, node: str) -> None:
    """Poll /healthz through the LB until ``node`` answers it twice in a row."""
    answers: list[str] = []
    for _ in range(100):
        status, body = http_get(running.http + "healthz")
        answers.append(json.loads(body)["node"] if status == 200 else f"status {status}")
        if answers[-2:] == [node, node]:
            return
    raise AssertionError(f"/healthz answers: {answers}")


# --- on a Redis Cluster (--redis-cluster) ------------------------------------

REDIS_CLUSTER_SERVERS = {f"redis-{i}" for i in range(1, 7)}


@pytest.fixture(scope="module")
def on_redis_cluster() -> Iterator[LocalCluster]:
    """One ``local-cluster --redis-cluster`` (3 nodes, 3 masters with a replica
    each) shared by the tests that leave every process running."""
    running = LocalCluster(nginx=require_tool("nginx"), args=("--redis-cluster",))
    running.start(timeout=60)
    yield running
    running.cleanup()


def _report_of(running: LocalCluster, name: str) -> str:
    return next(line for line in running.output if line.startswith(f"started  {name} "))


def test_with_redis_cluster_it_starts_three_masters_with_a_replica_each(
    on_redis_cluster: LocalCluster,
) -> None:
    lines = [_report_of(on_redis_cluster, name) for name in sorted(REDIS_CLUSTER_SERVERS)]

    masters = [line for line in lines if "(master, slots " in line]
    assert len(masters) == 3
    assert sum(line.endswith("(replica)\n") for line in lines) == 3
    assert {"node-1", "node-2", "node-3", "lb"} <= set(on_redis_cluster.pids)


def test_with_redis_cluster_the_nodes_run_on_it(on_redis_cluster: LocalCluster) -> None:
    for node in ("node-1", "node-2", "node-3"):
        cmdline = Path(f"/proc/{on_redis_cluster.pids[node]}/cmdline").read_bytes().split(b"\0")
        seeds = cmdline[cmdline.index(b"--redis-cluster") + 1].decode().split(",")

        assert b"--redis-url" not in cmdline
        assert set(seeds) == {on_redis_cluster.urls[name] for name in REDIS_CLUSTER_SERVERS}


async def test_with_redis_cluster_a_message_crosses_nodes_in_a_room_of_every_shard(
    on_redis_cluster: LocalCluster, wire: ClientFactory
) -> None:
    alice = await wire(on_redis_cluster.ws)
    for _ in range(5):
        bob = await wire(on_redis_cluster.ws)
        if bob.welcome["node"] != alice.welcome["node"]:
            break
    assert alice.welcome["node"] != bob.welcome["node"]

    for room in _room_per_shard(on_redis_cluster):
        await alice.join(room)
        await bob.join(room)
        await alice.expect("joined", room=room, session=bob.session)
        await bob.say(room, f"hello in {room}")
        heard = await alice.expect("message", room=room, **sent_by(bob.session))
        assert heard["body"] == f"hello in {room}"


def _room_per_shard(running: LocalCluster) -> list[str]:
    """A room name in each master's slots (the nodes' namespace is the default)."""
    ranges = []
    for name in REDIS_CLUSTER_SERVERS:
        line = _report_of(running, name)
        if "(master, slots " in line:
            text = line.split("(master, slots ", 1)[1].rstrip(")\n")
            ranges.append([tuple(map(int, part.split("-"))) for part in text.split()])
    rooms: dict[int, str] = {}
    for index in range(1000):
        room = f"shard-room-{index}"
        slot = room_slot("roomcast", room)
        owner = next(i for i, r in enumerate(ranges) if any(lo <= slot <= hi for lo, hi in r))
        rooms.setdefault(owner, room)
    assert len(rooms) == 3
    return list(rooms.values())


def test_with_redis_cluster_sigterm_stops_every_process_it_started() -> None:
    running = LocalCluster(nginx=require_tool("nginx"), nodes=2, args=("--redis-cluster",))
    running.start(timeout=60)
    try:
        started = dict(running.pids)
        assert set(started) == {"node-1", "node-2", "lb"} | REDIS_CLUSTER_SERVERS

        exit_code = running.stop()
    finally:
        running.cleanup()

    assert exit_code == 0
    assert [name for name, pid in started.items() if pid_alive(pid)] == []


async def test_with_redis_cluster_a_killed_master_is_reported_and_its_rooms_keep_working(
    wire: ClientFactory,
) -> None:
    running = LocalCluster(nginx=require_tool("nginx"), nodes=2, args=("--redis-cluster",))
    running.start(timeout=60)
    try:
        room = _room_per_shard(running)[0]
        master = _master_of(running, room)
        alice, bob = await wire(running.ws), await wire(running.ws)
        await alice.join(room)
        await bob.join(room)
        await alice.expect("joined", room=room, session=bob.session)

        os.kill(running.pids[master], signal.SIGKILL)
        line = running.wait_for_line(f"exited   {master}")
        heard = await _say_until_heard(bob, alice, room)

        assert running.process is not None and running.process.poll() is None
        assert line.rstrip().endswith("with -9")
        assert heard["body"] == "after the failover"
    finally:
        running.cleanup()


def _master_of(running: LocalCluster, room: str) -> str:
    """The name (``redis-N``) of the master whose slots hold ``room``."""
    slot = room_slot("roomcast", room)
    for name in sorted(REDIS_CLUSTER_SERVERS):
        line = _report_of(running, name)
        if "(master, slots " in line:
            text = line.split("(master, slots ", 1)[1].rstrip(")\n")
            for part in text.split():
                low, _, high = part.partition("-")
                if int(low) <= slot <= int(high or low):
                    return name
    raise AssertionError(f"no master for slot {slot}")


async def _say_until_heard(speaker: Any, listener: Any, room: str) -> dict[str, Any]:
    """Say in ``room`` until a say is taken (the replica has taken over: until
    then the node answers unavailable) and return what ``listener`` heard."""
    for _ in range(60):
        reply = await speaker.request("say", room=room, body="after the failover")
        if reply["type"] == "ok":
            heard: dict[str, Any] = await listener.expect("message", room=room, timeout=10)
            return heard
        assert reply["code"] == "unavailable", reply
        await asyncio.sleep(0.5)  # the pace of the retries, as a client's
    raise AssertionError("no say was taken within 30 s of the failover")
