"""A node that dies without a goodbye (SIGKILL) and comes back under the same
``--node-id`` announces ``left`` for its last run's sessions at once, without
waiting for the node timeout (broker/backends/redis.py, "Crash recovery";
the survivors' side is in tests/integration/test_node_crash_announcements.py)."""

from __future__ import annotations

import pytest

from tests.conftest import BrokerFactory, ClientFactory
from tests.support.processes import RedisServer

pytestmark = pytest.mark.redis

ROOM = "r"


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
