"""``deploy/local-cluster``: nginx, rendered from the template compose uses,
in front of real broker nodes on one real Redis."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from typing import Any

import pytest

from tests.conftest import ClientFactory
from tests.deploy.cluster import LocalCluster, pid_alive
from tests.deploy.conftest import ClusterFactory
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
