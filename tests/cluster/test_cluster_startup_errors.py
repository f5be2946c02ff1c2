"""``broker serve --redis-cluster`` refuses what it cannot use before it
serves: exit code 2 and one line on stderr (a seed that is not a cluster
node, a cluster with slots no master serves, no seed reachable, a bad seed
list, both Redis options at once)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest

from broker.bench.redis_cluster import cluster_port
from tests.integration.test_startup_errors import assert_one_line, serve
from tests.support.processes import RedisServer, free_port

pytestmark = pytest.mark.redis


@pytest.fixture
def half_cluster() -> Iterator[RedisServer]:
    """A one-node cluster that serves slots 0 to 8000 only."""
    workdir = tempfile.mkdtemp(prefix="roomcast-half-cluster-")
    # A cluster node also listens on port + 10000: that one must be free too.
    server = RedisServer(
        port=cluster_port(),
        extra_args=(
            "--cluster-enabled", "yes",
            "--cluster-config-file", f"{workdir}/nodes.conf",
            "--dir", workdir,
        )
    ).start()  # fmt: skip
    server.cli("cluster", "addslotsrange", "0", "8000")
    yield server
    server.kill()
    shutil.rmtree(workdir, ignore_errors=True)


def test_a_seed_that_is_not_a_cluster_node_is_one_line(redis_server: RedisServer) -> None:
    result = serve("--redis-cluster", redis_server.url, "--log-level", "error")

    assert_one_line(
        result, f"Redis at 127.0.0.1:{redis_server.port} is not a cluster node (cluster support"
    )


def test_a_cluster_with_slots_no_master_serves_is_one_line(half_cluster: RedisServer) -> None:
    result = serve("--redis-cluster", half_cluster.url, "--log-level", "error")

    assert_one_line(
        result,
        f"the Redis Cluster at 127.0.0.1:{half_cluster.port} serves only 8001 of 16384 slots",
    )


def test_no_reachable_seed_is_one_line() -> None:
    seeds = f"redis://127.0.0.1:{free_port()},redis://127.0.0.1:{free_port()}"

    result = serve("--redis-cluster", seeds, "--log-level", "error")

    assert_one_line(result, "no Redis Cluster node answered: cannot reach Redis at")
    assert result.stderr.count("Connection refused") == 2


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (
            ("--redis-cluster", "nonsense"),
            "--redis-cluster (BROKER_REDIS_CLUSTER): must be a redis://",
        ),
        (
            ("--redis-cluster", "redis://a:7000,,redis://b:7000"),
            "--redis-cluster (BROKER_REDIS_CLUSTER): has an empty seed between commas",
        ),
        (
            ("--redis-cluster", "redis://a:7000/3"),
            "--redis-cluster (BROKER_REDIS_CLUSTER): has a database other than 0",
        ),
        (
            ("--redis-cluster", "redis://a:7000", "--redis-url", "redis://b:6379"),
            "--redis-cluster (BROKER_REDIS_CLUSTER): cannot be used with --redis-url",
        ),
        (
            ("--redis-cluster-wait-replicas", "-1"),
            "--redis-cluster-wait-replicas (BROKER_REDIS_CLUSTER_WAIT_REPLICAS): must be from 0",
        ),
    ],
)
def test_a_bad_cluster_setting_is_one_line(flags: tuple[str, ...], expected: str) -> None:
    assert_one_line(serve(*flags), expected)
