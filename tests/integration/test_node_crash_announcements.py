"""A node that dies without a word leaves no ghosts: the other nodes announce
`left` for its sessions, and a node taken for dead by mistake re-announces
its members' `joined`."""

from __future__ import annotations

import signal

import pytest

from tests.conftest import BrokerFactory, ClientFactory
from tests.support.processes import RedisServer

pytestmark = pytest.mark.redis


async def test_members_of_a_killed_node_are_announced_as_left(
    broker: BrokerFactory, redis_server: RedisServer, wire: ClientFactory
) -> None:
    args = ("--redis-url", redis_server.url, "--node-timeout", "1.5")
    survivor, doomed = broker(*args), broker(*args)
    watcher = await wire(survivor.url)
    victims = [await wire(doomed.url) for _ in range(2)]
    await watcher.join("room")
    for victim in victims:
        await victim.join("room")
        await watcher.expect("joined", session=victim.session)

    doomed.kill()  # SIGKILL: no drain, no left from the node itself

    gone = {(await watcher.expect("left", timeout=10))["session"] for _ in victims}
    assert gone == {victim.session for victim in victims}
    await watcher.expect_silence()


async def test_a_node_taken_for_dead_announces_its_members_again(
    broker: BrokerFactory, redis_server: RedisServer, wire: ClientFactory
) -> None:
    args = ("--redis-url", redis_server.url, "--node-timeout", "1.5")
    first, second = broker(*args), broker(*args)
    watcher = await wire(first.url)
    member = await wire(second.url)
    await watcher.join("room")
    await member.join("room")
    await watcher.expect("joined", session=member.session)
    assert second.process is not None

    # A node frozen past the timeout (a long pause, a partition) looks dead.
    second.process.send_signal(signal.SIGSTOP)
    try:
        await watcher.expect("left", session=member.session, timeout=10)
    finally:
        second.process.send_signal(signal.SIGCONT)

    await watcher.expect("joined", session=member.session, timeout=10)
    await member.say("room", "still here")
    await watcher.expect("message", body="still here")
