"""``deploy/docker-compose.yml``: validated by docker-compose, and the topology
it describes (one Redis, three brokers, nginx on the shared template)."""

from __future__ import annotations

import functools
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.deploy.tools import require_tool
from tests.support.processes import REPO

COMPOSE = REPO / "deploy" / "docker-compose.yml"
BROKERS = ["broker-1", "broker-2", "broker-3"]


def _compose(*args: str) -> subprocess.CompletedProcess[str]:
    docker_compose = require_tool("docker-compose")
    return subprocess.run(
        [docker_compose, "-f", str(COMPOSE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


@functools.cache
def _config() -> dict[str, Any]:
    """The file as docker-compose resolves it (anchors merged, paths absolute)."""
    result = _compose("config")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def _default_services() -> dict[str, Any]:
    """The services ``up`` starts without a ``--profile`` (monitoring is optional)."""
    services: dict[str, Any] = _config()["services"]
    return {name: s for name, s in services.items() if not s.get("profiles")}


def _service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = _config()["services"][name]
    return service


@functools.cache
def _local_cluster() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "local_cluster", REPO / "deploy" / "local_cluster.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["local_cluster"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_compose_file_is_valid() -> None:
    result = _compose("config", "--quiet")

    assert result.returncode == 0, result.stderr


def test_compose_runs_redis_three_brokers_and_a_load_balancer() -> None:
    assert sorted(_default_services()) == ["broker-1", "broker-2", "broker-3", "lb", "redis"]


def test_brokers_have_distinct_node_ids_on_one_redis() -> None:
    envs = [_service(name)["environment"] for name in BROKERS]

    assert [env["BROKER_NODE_ID"] for env in envs] == BROKERS
    assert {env["BROKER_REDIS_URL"] for env in envs} == {"redis://redis:6379/0"}


def test_brokers_are_built_from_the_deploy_dockerfile_with_the_repo_as_context() -> None:
    for name in BROKERS:
        build = _service(name)["build"]
        assert build["context"] == str(REPO)
        assert build["dockerfile"] == "deploy/Dockerfile"


@pytest.mark.parametrize("name", ["redis", "lb"])
def test_redis_and_the_load_balancer_have_healthchecks(name: str) -> None:
    # The brokers' comes with their image (HEALTHCHECK in deploy/Dockerfile).
    assert _service(name)["healthcheck"]["test"][0] == "CMD"


def test_only_the_load_balancer_publishes_a_port_8080() -> None:
    published = {name: s.get("ports") for name, s in _default_services().items() if s.get("ports")}

    assert list(published) == ["lb"]
    assert [(p["published"], p["target"]) for p in published["lb"]] == [(8080, 8080)]


def test_load_balancer_waits_for_healthy_brokers() -> None:
    depends = _service("lb")["depends_on"]

    assert {name: depends[name]["condition"] for name in BROKERS} == dict.fromkeys(
        BROKERS, "service_healthy"
    )


def test_load_balancer_renders_the_shared_template_for_every_broker() -> None:
    lb = _service("lb")
    volumes = {v.split(":")[1]: v.split(":")[0] for v in lb["volumes"]}
    template = volumes["/etc/nginx/templates/default.conf.template"]
    env = lb["environment"]

    rendered = _local_cluster().render_template(
        (REPO / "deploy" / "nginx" / "roomcast.conf.template").read_text(), env
    )

    assert template == str(REPO / "deploy" / "nginx" / "roomcast.conf.template")
    assert env["NGINX_ENVSUBST_FILTER"] == "^ROOMCAST_"
    assert "${ROOMCAST_" not in rendered
    for name in BROKERS:
        port = _service(name)["environment"]["BROKER_PORT"]
        assert re.search(rf"server {name}:{port}( resolve)?;", rendered)
    assert volumes[env["ROOMCAST_DEMO_ROOT"]] == str(REPO / "deploy" / "demo")
    assert f"listen {env['ROOMCAST_LISTEN']};" in rendered


def test_load_balancer_has_room_for_thousands_of_websockets() -> None:
    # Each proxied WebSocket holds two connections in nginx; the image's own
    # nginx.conf allows only 1024 per worker.
    lb = _service("lb")
    volumes = {v.split(":")[1]: v.split(":")[0] for v in lb["volumes"]}
    main_conf = Path(volumes["/etc/nginx/nginx.conf"]).read_text()
    worker_connections = int(re.search(r"worker_connections\s+(\d+);", main_conf)[1])  # type: ignore[index]

    assert worker_connections >= 16384
    assert lb["ulimits"]["nofile"] >= 2 * worker_connections
    assert "include /etc/nginx/conf.d/*.conf;" in main_conf


def test_load_balancer_looks_up_recreated_brokers_again() -> None:
    # A recreated container may get a new address; nginx resolves upstream
    # names once at start unless a server says "resolve" and a resolver is set.
    lb = _service("lb")
    volumes = {v.split(":")[1]: v.split(":")[0] for v in lb["volumes"]}
    main_conf = Path(volumes["/etc/nginx/nginx.conf"]).read_text()
    servers = lb["environment"]["ROOMCAST_UPSTREAM_SERVERS"]

    assert servers.count(" resolve;") == len(BROKERS)
    assert re.search(r"^\s*resolver 127\.0\.0\.11\b", main_conf, re.M)
    image_version = re.fullmatch(r"nginx:1\.(\d+)(\.\d+)?-alpine", lb["image"])
    assert image_version is not None and int(image_version[1]) >= 27  # resolve: 1.27.3+
