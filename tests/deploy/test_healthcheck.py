"""``deploy/healthcheck.py``, the image's HEALTHCHECK, against real nodes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.conftest import BrokerFactory
from tests.support.processes import REPO, RedisServer, free_port

PROBE = REPO / "deploy" / "healthcheck.py"


def probe(port: int) -> int:
    """Run the probe as the image does, with ``BROKER_PORT``; return its exit code."""
    env = {**os.environ, "BROKER_PORT": str(port)}
    return subprocess.run([sys.executable, str(PROBE)], env=env, timeout=10).returncode


def test_a_serving_node_is_healthy(broker: BrokerFactory) -> None:
    node = broker()

    assert probe(node.port) == 0


def test_nothing_listening_is_unhealthy() -> None:
    assert probe(free_port()) == 1


@pytest.mark.redis
def test_a_node_that_lost_redis_is_unhealthy(
    broker: BrokerFactory, redis_server: RedisServer, namespace: str
) -> None:
    node = broker("--redis-url", redis_server.url, "--namespace", namespace)

    redis_server.kill()
    deadline = time.monotonic() + 15
    while node.health()[0] != 503:
        assert time.monotonic() < deadline, "/healthz never turned 503"
        time.sleep(0.1)

    assert probe(node.port) == 1
