"""``deploy/docker-compose.yml``: validated by docker-compose, and the topology
it describes (one Redis, three brokers, nginx on the shared template); and
``deploy/docker-compose.cluster.yml``, the same on a Redis Cluster."""

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
CLUSTER_COMPOSE = REPO / "deploy" / "docker-compose.cluster.yml"
BROKERS = ["broker-1", "broker-2", "broker-3"]
REDIS_NODES = [f"redis-{i}" for i in range(1, 7)]


def _compose(*args: str, file: Path = COMPOSE) -> subprocess.CompletedProcess[str]:
    docker_compose = require_tool("docker-compose")
    return subprocess.run(
        [docker_compose, "-f", str(file), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


@functools.cache
def _config(file: Path = COMPOSE) -> dict[str, Any]:
    """The file as docker-compose resolves it (anchors merged, paths absolute)."""
    result = _compose("config", file=file)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def _cluster_service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = _config(CLUSTER_COMPOSE)["services"][name]
    return service


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


def test_cluster_compose_file_is_valid() -> None:
    result = _compose("config", "--quiet", file=CLUSTER_COMPOSE)

    assert result.returncode == 0, result.stderr


def test_cluster_compose_runs_six_redis_a_cluster_creator_three_brokers_and_a_lb() -> None:
    services = _config(CLUSTER_COMPOSE)["services"]

    assert sorted(services) == sorted([*REDIS_NODES, "redis-cluster-create", *BROKERS, "lb"])


@pytest.mark.parametrize("name", REDIS_NODES)
def test_cluster_redis_nodes_are_cluster_enabled_and_healthchecked(name: str) -> None:
    service = _cluster_service(name)
    command = service["command"]

    assert command[0] == "redis-server"
    assert command[command.index("--cluster-enabled") + 1] == "yes"
    assert service["healthcheck"]["test"][0] == "CMD"
    assert "ports" not in service


def test_cluster_creator_waits_for_every_healthy_node_and_gives_each_master_a_replica() -> None:
    creator = _cluster_service("redis-cluster-create")
    script = "\n".join(creator["command"])

    assert {name: d["condition"] for name, d in creator["depends_on"].items()} == dict.fromkeys(
        REDIS_NODES, "service_healthy"
    )
    assert "redis-cli --cluster create" in script
    assert "--cluster-replicas 1" in script
    assert all(name in script for name in REDIS_NODES)
    assert creator["restart"] == "no"


def test_cluster_brokers_start_once_the_cluster_is_created_and_use_it_as_seeds() -> None:
    for name in BROKERS:
        broker = _cluster_service(name)
        env = broker["environment"]
        seeds = env["BROKER_REDIS_CLUSTER"].split(",")

        assert broker["depends_on"] == {
            "redis-cluster-create": {"condition": "service_completed_successfully"}
        }
        assert "BROKER_REDIS_URL" not in env
        assert env["BROKER_NODE_ID"] == name
        assert all(
            re.fullmatch(r"redis://(redis-\d):6379", seed)[1] in REDIS_NODES  # type: ignore[index]
            for seed in seeds
        )


def test_cluster_brokers_are_built_as_in_the_single_redis_file() -> None:
    for name in BROKERS:
        assert _cluster_service(name)["build"] == _service(name)["build"]
        assert _cluster_service(name)["image"] == _service(name)["image"]


def test_cluster_load_balancer_is_the_single_redis_files() -> None:
    assert _cluster_service("lb") == _service("lb")
