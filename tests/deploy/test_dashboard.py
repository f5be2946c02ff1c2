"""``deploy/grafana/roomcast.json`` is built only from what a node exposes:
every metric in every panel's query is in a live node's ``GET /metrics``;
and the compose file's ``monitoring`` profile scrapes every broker and
provisions that dashboard."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import REPO, BrokerProcess, http_get

DASHBOARD = REPO / "deploy" / "grafana" / "roomcast.json"
PROMETHEUS = REPO / "deploy" / "prometheus" / "prometheus.yml"
COMPOSE = REPO / "deploy" / "docker-compose.yml"

# PromQL words that look like metric names but are functions, aggregations,
# modifiers or operators (https://prometheus.io/docs/prometheus/latest/querying/).
_PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "sum", "avg", "min", "max", "count", "topk", "bottomk", "quantile",
    "stddev", "stdvar",
}  # fmt: skip
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # range selectors
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", expr)  # label lists
    words = re.findall(r"(?<![\w$.])([A-Za-z_:][\w:]*)\b(?!\s*\()", expr)
    return {word for word in words if word not in _PROMQL_WORDS}


def exposed_names(text: str) -> set[str]:
    """Every series name a Prometheus text exposition offers, also for a
    labelled family that has no sample yet (``roomcast_errors_total{code}``)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def panels() -> list[dict[str, Any]]:
    """The dashboard's panels, rows excluded."""
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def used_names() -> set[str]:
    return {
        name for panel in panels() for t in panel["targets"] for name in metric_names(t["expr"])
    }


@pytest.fixture(scope="module")
def live_metrics() -> Iterator[set[str]]:
    """The series names of a real node's ``/metrics``."""
    node = BrokerProcess()
    try:
        node.start()
        status, body = http_get(node.http + "/metrics")
        assert status == 200
        yield exposed_names(body.decode())
    finally:
        node.cleanup()


def test_metric_names_are_read_from_promql() -> None:
    expr = 'histogram_quantile(0.99, sum by (le) (rate(a_bucket{job="$job"}[$__rate_interval])))'

    assert metric_names(expr) == {"a_bucket"}
    assert metric_names("sum by (x) (rate(b_total[1m])) / rate(c_total[5m])") == {
        "b_total",
        "c_total",
    }


@pytest.mark.parametrize("panel", panels(), ids=lambda panel: panel["title"])
def test_every_panel_query_reads_only_metrics_a_node_exposes(
    panel: dict[str, Any], live_metrics: set[str]
) -> None:
    names = {name for target in panel["targets"] for name in metric_names(target["expr"])}

    assert names, "a panel without any metric"
    assert names <= live_metrics, names - live_metrics


def test_dashboard_covers_what_an_operator_watches() -> None:
    watched = {
        "roomcast_connections_open",
        "roomcast_rooms",
        "roomcast_memberships",
        "roomcast_messages_in_total",
        "roomcast_messages_out_total",
        "roomcast_deliveries_total",
        "roomcast_socket_writes_total",
        "roomcast_delivery_latency_seconds_bucket",
        "roomcast_slow_consumer_disconnects_total",
        "roomcast_errors_total",
        "roomcast_backend_up",
        "roomcast_backend_canary_lag_seconds",
        "roomcast_backend_canary_misses_total",
        "roomcast_event_loop_lag_seconds",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    }

    assert watched <= used_names(), watched - used_names()


def test_every_query_selects_the_job_prometheus_scrapes() -> None:
    jobs = [job["job_name"] for job in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]]
    dashboard = json.loads(DASHBOARD.read_text())
    job_variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "job")

    assert jobs == [job_variable["query"]]
    for panel in panels():
        for target in panel["targets"]:
            assert '{job="$job"}' in target["expr"], target["expr"]


def test_prometheus_scrapes_every_broker_of_the_compose_file() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    brokers = sorted(name for name in services if name.startswith("broker-"))
    config = yaml.safe_load(PROMETHEUS.read_text())
    targets = [
        t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    ]

    assert targets == [f"{name}:8765" for name in brokers]


def test_monitoring_is_an_optional_profile_that_provisions_the_dashboard() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    grafana, prometheus = services["grafana"], services["prometheus"]

    assert grafana["profiles"] == prometheus["profiles"] == ["monitoring"]
    assert (
        "./grafana/roomcast.json:/var/lib/grafana/dashboards/roomcast.json:ro"
        in (grafana["volumes"])
    )
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]


def test_grafana_datasource_is_the_prometheus_service() -> None:
    provisioning = REPO / "deploy" / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    dashboards = yaml.safe_load((provisioning / "dashboards" / "roomcast.yml").read_text())

    assert [d["url"] for d in datasources["datasources"]] == ["http://prometheus:9090"]
    assert [p["options"]["path"] for p in dashboards["providers"]] == [
        "/var/lib/grafana/dashboards"
    ]
