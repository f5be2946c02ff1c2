"""``GET /metrics`` counts what a small scripted exchange did (Prometheus
text, as a scraper parses it), and ``GET /livez`` answers while the loop runs."""

from __future__ import annotations

import json

import pytest

from tests.conftest import BrokerFactory, ClientFactory
from tests.reliability.observe import Metrics, scrape
from tests.support.processes import BrokerProcess, http_get

SAYS = 3


@pytest.fixture
def node(broker: BrokerFactory) -> BrokerProcess:
    return broker()


@pytest.fixture
async def after_exchange(node: BrokerProcess, wire: ClientFactory) -> Metrics:
    """Metrics after: two clients join one room (one ``joined`` delivered),
    one says ``SAYS`` times (delivered to the other), says once to a room it
    is not in, and sends one frame that is not JSON."""
    alice = await wire(node.url)
    bob = await wire(node.url)
    await alice.join("metrics")
    await bob.join("metrics")
    await alice.expect("joined", session=bob.session)
    for n in range(SAYS):
        await alice.say("metrics", n)
        await bob.expect("message", body=n)
    reply = await alice.request("say", room="elsewhere", body="x")
    assert reply["code"] == "not_member"
    await alice.send_raw("{not json")
    assert (await alice.next_event())["code"] == "bad_json"
    return scrape(node)


async def test_metrics_count_connections_and_rooms(after_exchange: Metrics) -> None:
    assert after_exchange.value("roomcast_connections_open") == 2
    assert after_exchange.value("roomcast_connections_total") == 2
    assert after_exchange.value("roomcast_rooms") == 1
    assert after_exchange.value("roomcast_memberships") == 2


async def test_metrics_count_messages_in_and_deliveries(after_exchange: Metrics) -> None:
    assert after_exchange.value("roomcast_messages_in_total") == SAYS
    # Bob's `joined` reached Alice, and each say reached Bob.
    assert after_exchange.value("roomcast_deliveries_total") == 1 + SAYS
    # A fan-out counts once per room with a local member, even when that
    # member is the sender and nobody gets a frame: Alice's own `joined` too.
    assert after_exchange.value("roomcast_messages_out_total") == 2 + SAYS
    assert after_exchange.value("roomcast_bytes_out_total") > 0


async def test_metrics_count_errors_by_code(after_exchange: Metrics) -> None:
    assert after_exchange.value("roomcast_errors_total", code="not_member") == 1
    assert after_exchange.value("roomcast_errors_total", code="bad_json") == 1
    assert after_exchange.value("roomcast_errors_total", code="rate_limited") == 0


async def test_latency_histogram_count_grows_with_deliveries(
    node: BrokerProcess, wire: ClientFactory
) -> None:
    before = scrape(node).value("roomcast_delivery_latency_seconds_count")
    alice = await wire(node.url)
    bob = await wire(node.url)
    await alice.join("latency")
    await bob.join("latency")
    await alice.say("latency", "hi")
    await bob.expect("message", body="hi")

    after = scrape(node)

    assert after.value("roomcast_delivery_latency_seconds_count") > before
    assert after.types["roomcast_delivery_latency_seconds_count"] == "histogram"
    assert after.value("roomcast_delivery_latency_seconds_bucket", le="+Inf") == after.value(
        "roomcast_delivery_latency_seconds_count"
    )


async def test_metrics_are_served_as_prometheus_text(node: BrokerProcess) -> None:
    metrics = scrape(node)

    assert metrics.types["roomcast_connections_total"] == "counter"
    assert metrics.types["roomcast_connections_open"] == "gauge"
    assert metrics.value("roomcast_backend_up") == 1
    assert metrics.value("roomcast_draining") == 0


async def test_livez_answers_200_with_json(node: BrokerProcess) -> None:
    status, body = http_get(node.http + "/livez")

    assert status == 200
    answer = json.loads(body)
    assert answer["status"] == "alive"
    assert answer["loop_lag_seconds"] >= 0
