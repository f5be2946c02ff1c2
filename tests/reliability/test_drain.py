"""Graceful drain on SIGTERM (broker/server.py): the node stops taking
clients, closes its own with 1001 spread over ``--drain-seconds``, the other
nodes hear ``left`` for each, and the process exits 0; a second signal exits
at once."""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conftest import BrokerFactory, ClientFactory
from tests.reliability.observe import eventually, health
from tests.support.processes import BrokerProcess, RedisServer
from tests.support.wire import WireClient

pytestmark = pytest.mark.redis

ROOM = "drain"
CLIENTS = 10
DRAIN_SECONDS = 2.0


@dataclass
class Cluster:
    """Node A (to be drained) with ``CLIENTS`` members of ``ROOM``, and node B
    with a ``watcher`` in the same room that has seen every one join."""

    a: BrokerProcess
    b: BrokerProcess
    clients: list[WireClient]
    watcher: WireClient

    def sigterm_a(self) -> None:
        assert self.a.process is not None
        self.a.process.send_signal(signal.SIGTERM)

    async def exit_code_of_a(self, timeout: float) -> int:
        assert self.a.process is not None
        return await asyncio.to_thread(self.a.process.wait, timeout)


async def start_cluster(
    broker: BrokerFactory,
    redis: RedisServer,
    namespace: str,
    wire: ClientFactory,
    drain_seconds: float,
    clients: int,
) -> Cluster:
    common = ("--redis-url", redis.url, "--namespace", namespace)
    a = broker(*common, "--drain-seconds", str(drain_seconds))
    b = broker(*common)
    watcher = await wire(b.url)
    await watcher.join(ROOM)
    members = [await wire(a.url) for _ in range(clients)]
    for member in members:
        await member.join(ROOM)
    joined = {(await watcher.expect("joined", room=ROOM))["session"] for _ in members}
    assert joined == {member.session for member in members}
    return Cluster(a, b, members, watcher)


@pytest.fixture
async def cluster(
    broker: BrokerFactory, shared_redis: RedisServer, namespace: str, wire: ClientFactory
) -> Cluster:
    return await start_cluster(broker, shared_redis, namespace, wire, DRAIN_SECONDS, CLIENTS)


async def closed_at(client: WireClient) -> float:
    """When the server closed ``client`` (monotonic seconds)."""
    await client.wait_closed(timeout=DRAIN_SECONDS + 10)
    return time.monotonic()


async def test_drain_closes_every_client_with_1001_spread_over_the_drain_time(
    cluster: Cluster,
) -> None:
    cluster.sigterm_a()

    times = await asyncio.gather(*(closed_at(client) for client in cluster.clients))

    assert [client.ws.close_code for client in cluster.clients] == [1001] * CLIENTS
    spread = max(times) - min(times)
    assert 1.0 <= spread <= DRAIN_SECONDS + 1.0, spread


async def test_drain_tells_other_nodes_that_every_client_left(cluster: Cluster) -> None:
    cluster.sigterm_a()

    left = set()
    for _ in cluster.clients:
        event = await cluster.watcher.expect("left", room=ROOM, timeout=DRAIN_SECONDS + 5)
        left.add(event["session"])

    assert left == {client.session for client in cluster.clients}


async def test_draining_node_is_unhealthy_and_refuses_new_connections(cluster: Cluster) -> None:
    cluster.sigterm_a()

    await eventually(lambda: _not_ok(cluster.a), timeout=1.0)
    assert cluster.a.process is not None and cluster.a.process.poll() is None  # still draining
    with pytest.raises((InvalidStatus, OSError)) as refused:
        await connect(cluster.a.url, open_timeout=2)
    if isinstance(refused.value, InvalidStatus):
        assert refused.value.response.status_code == 503


async def test_drained_node_exits_0(cluster: Cluster) -> None:
    cluster.sigterm_a()

    assert await cluster.exit_code_of_a(timeout=DRAIN_SECONDS + 10) == 0


async def test_second_sigterm_during_a_long_drain_exits_at_once(
    broker: BrokerFactory, shared_redis: RedisServer, namespace: str, wire: ClientFactory
) -> None:
    # Three clients over 30 s: one is closed at once, the next 15 s later.
    cluster = await start_cluster(broker, shared_redis, namespace, wire, 30.0, 3)
    cluster.sigterm_a()
    # The drain is under way once one client is closed (in no particular order).
    closing = [asyncio.create_task(client.ws.wait_closed()) for client in cluster.clients]
    done, pending = await asyncio.wait(closing, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    assert len(done) == 1, "no client closed within 5 s of the first SIGTERM"

    cluster.sigterm_a()

    started = time.monotonic()
    code = await cluster.exit_code_of_a(timeout=5)
    assert time.monotonic() - started < 2.0
    assert code == 1  # not a clean drain, and says so


async def _not_ok(node: BrokerProcess) -> bool:
    # 503 while draining, or 0 once the listening socket is closed.
    return await health(node) != 200
