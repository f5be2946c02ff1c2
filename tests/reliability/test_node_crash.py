"""A node that dies without a goodbye (SIGKILL): the survivors announce
``left`` for its sessions, so no member elsewhere keeps a ghost
(broker/backends/redis.py, "Crash recovery")."""

from __future__ import annotations

import time

import pytest

from tests.conftest import BrokerFactory, ClientFactory
from tests.support.processes import RedisServer

pytestmark = pytest.mark.redis

ROOM = "r"
NODE_TIMEOUT = 2.0


async def test_members_of_a_crashed_node_are_announced_left_within_the_node_timeout(
    broker: BrokerFactory, shared_redis: RedisServer, namespace: str, wire: ClientFactory
) -> None:
    common = ("--redis-url", shared_redis.url, "--namespace", namespace)
    doomed = broker(*common, "--node-timeout", str(NODE_TIMEOUT))
    survivor = broker(*common, "--node-timeout", str(NODE_TIMEOUT))
    watcher = await wire(survivor.url)
    victim = await wire(doomed.url)
    await watcher.join(ROOM)
    await victim.join(ROOM)
    await watcher.expect("joined", session=victim.session)

    doomed.kill()
    crashed = time.monotonic()

    await watcher.expect("left", room=ROOM, session=victim.session, timeout=NODE_TIMEOUT + 5)
    assert time.monotonic() - crashed < NODE_TIMEOUT + 3


async def test_node_restarted_after_a_crash_announces_left_for_its_last_run_at_once(
    broker: BrokerFactory, shared_redis: RedisServer, namespace: str, wire: ClientFactory
) -> None:
    common = ("--redis-url", shared_redis.url, "--namespace", namespace)
    # A node timeout far beyond the test: only the restart can tell.
    doomed = broker(*common, "--node-id", "n-phoenix", "--node-timeout", "60")
    survivor = broker(*common, "--node-timeout", "60")
    watcher = await wire(survivor.url)
    victim = await wire(doomed.url)
    await watcher.join(ROOM)
    await victim.join(ROOM)
    await watcher.expect("joined", session=victim.session)
    doomed.kill()

    broker(*common, "--node-id", "n-phoenix", "--node-timeout", "60")

    await watcher.expect("left", room=ROOM, session=victim.session, timeout=5)
