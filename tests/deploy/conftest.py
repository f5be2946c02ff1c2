"""Fixtures of the deploy tests: the local cluster and a headless browser."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.deploy.cdp import Chromium
from tests.deploy.cluster import LocalCluster
from tests.deploy.tools import require_tool

ClusterFactory = Callable[..., LocalCluster]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """One local cluster (3 nodes behind nginx) shared by a module's tests.

    Tests that use it must leave every node running; tests that stop nodes
    use :func:`new_cluster`.
    """
    running = LocalCluster(nginx=require_tool("nginx")).start()
    yield running
    running.cleanup()


@pytest.fixture
def new_cluster() -> Iterator[ClusterFactory]:
    """Start local clusters of this test's own: ``new_cluster(nodes=3, env={...})``."""
    nginx = require_tool("nginx")
    started: list[LocalCluster] = []

    def start(nodes: int = 3, env: dict[str, str] | None = None) -> LocalCluster:
        running = LocalCluster(nginx=nginx, nodes=nodes, env=env or {})
        started.append(running)
        return running.start()

    yield start
    for running in started:
        running.cleanup()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    """One headless Chromium for a module; each test opens its own DevTools connection."""
    browser = Chromium(require_tool("chromium")).start()
    yield browser
    browser.stop()
