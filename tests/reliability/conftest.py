"""Fixtures of the reliability tests: two nodes on a Redis of the test's own,
and one member of a room on each."""

from __future__ import annotations

import pytest

from tests.conftest import BrokerFactory, ClientFactory
from tests.support.processes import BrokerProcess, RedisServer
from tests.support.wire import WireClient

ROOM = "r"


@pytest.fixture
def nodes(broker: BrokerFactory, redis_server: RedisServer) -> tuple[BrokerProcess, BrokerProcess]:
    """Nodes A and B on ``redis_server``, which the test may stop, kill or stall."""
    return (
        broker("--redis-url", redis_server.url, "--node-id", "n-a"),
        broker("--redis-url", redis_server.url, "--node-id", "n-b"),
    )


@pytest.fixture
async def members(
    nodes: tuple[BrokerProcess, BrokerProcess], wire: ClientFactory
) -> tuple[WireClient, WireClient]:
    """Client ``a`` on node A and ``b`` on node B, both in room ``ROOM``, each
    knowing of the other."""
    a = await wire(nodes[0].url)
    b = await wire(nodes[1].url)
    await a.join(ROOM)
    await b.join(ROOM)
    await a.expect("joined", room=ROOM, session=b.session)
    return a, b
