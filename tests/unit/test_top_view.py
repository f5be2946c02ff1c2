"""broker.top.view: rates from two readings of a node, down nodes, totals;
broker.top.scrape's pure helpers (URLs, the Prometheus text)."""

from __future__ import annotations

import pytest

from broker.top.scrape import Scrape, base_url, parse_metrics
from broker.top.screen import render
from broker.top.view import node_view, snapshot, totals

URL = "http://127.0.0.1:8765"


def reading(at: float, node: str = "n-1", **metrics: float) -> Scrape:
    return Scrape(URL, at, node, metrics)


def test_rates_are_counter_increase_over_the_time_between_readings() -> None:
    before = reading(10.0, roomcast_messages_in_total=100, roomcast_deliveries_total=1000)
    now = reading(12.0, roomcast_messages_in_total=150, roomcast_deliveries_total=5000)

    view = node_view(before, now)

    assert (view.messages_in_per_s, view.deliveries_per_s) == (25.0, 2000.0)


def test_first_reading_has_no_rates_yet() -> None:
    view = node_view(None, reading(1.0, roomcast_messages_in_total=5))

    assert view.up and view.messages_in_per_s is None


def test_a_counter_that_went_down_gives_no_rate() -> None:
    # The node restarted between the readings (same id given with --node-id).
    before = reading(1.0, roomcast_messages_in_total=500)

    assert node_view(before, reading(2.0, roomcast_messages_in_total=3)).messages_in_per_s is None


def test_a_new_node_id_at_the_same_url_starts_its_rates_afresh() -> None:
    before = reading(1.0, "n-old", roomcast_messages_in_total=1)
    now = reading(2.0, "n-new", roomcast_messages_in_total=9)

    assert node_view(before, now).messages_in_per_s is None


def test_gauges_are_shown_as_read() -> None:
    view = node_view(
        None,
        reading(
            1.0,
            roomcast_connections_open=3,
            roomcast_rooms=2,
            roomcast_memberships=4,
            roomcast_slow_consumer_disconnects_total=1,
            roomcast_event_loop_lag_seconds=0.002,
            process_resident_memory_bytes=4096,
        ),
    )

    assert (view.connections, view.rooms, view.memberships) == (3, 2, 4)
    assert (view.slow_consumer_disconnects, view.loop_lag_seconds, view.rss_bytes) == (
        1,
        0.002,
        4096,
    )


@pytest.mark.parametrize(
    ("metrics", "backend"),
    [
        ({"roomcast_backend_up": 1.0, "roomcast_draining": 0.0}, "up"),
        ({"roomcast_backend_up": 0.0, "roomcast_draining": 0.0}, "down"),
        ({"roomcast_backend_up": 1.0, "roomcast_draining": 1.0}, "draining"),
        ({}, None),
    ],
)
def test_backend_state_comes_from_backend_up_and_draining(
    metrics: dict[str, float], backend: str | None
) -> None:
    assert node_view(None, Scrape(URL, 1.0, "n-1", metrics)).backend == backend


def test_a_node_that_did_not_answer_is_down_with_its_reason_and_last_known_id() -> None:
    view = node_view(reading(1.0, "n-7"), Scrape(URL, 2.0, error="Connection refused"))

    assert (view.up, view.node, view.error, view.connections) == (
        False,
        "n-7",
        "Connection refused",
        None,
    )


def test_totals_sum_the_nodes_up_and_count_the_down() -> None:
    views = [
        node_view(None, reading(1.0, roomcast_connections_open=2)),
        node_view(None, reading(1.0, roomcast_connections_open=5)),
        node_view(None, Scrape(URL, 1.0, error="timed out")),
    ]

    summed = totals(views)

    assert (summed["nodes_up"], summed["nodes_down"], summed["connections"]) == (2, 1, 7)
    assert summed["deliveries_per_s"] is None  # no node knows it yet


def test_snapshot_is_plain_data_with_one_entry_per_node() -> None:
    data = snapshot([node_view(None, reading(1.0, roomcast_rooms=1))])

    assert data["nodes"][0]["rooms"] == 1 and data["totals"]["nodes_up"] == 1


@pytest.mark.parametrize(
    ("given", "base"),
    [
        ("http://127.0.0.1:8765/", "http://127.0.0.1:8765"),
        ("127.0.0.1:8765", "http://127.0.0.1:8765"),
        ("ws://node-1:8765/ws", "http://node-1:8765"),
        ("wss://broker.example.com/ws", "https://broker.example.com"),
    ],
)
def test_base_url_accepts_what_users_paste(given: str, base: str) -> None:
    assert base_url(given) == base


def test_parse_metrics_keeps_samples_without_labels() -> None:
    text = (
        "# TYPE roomcast_deliveries_total counter\n"
        "roomcast_deliveries_total 12.0\n"
        "# TYPE roomcast_errors_total counter\n"
        'roomcast_errors_total{code="not_member"} 3.0\n'
    )

    assert parse_metrics(text) == {"roomcast_deliveries_total": 12.0}


def test_screen_has_a_row_per_node_a_down_reason_and_totals() -> None:
    views = [
        node_view(None, reading(1.0, "n-1", roomcast_connections_open=12345)),
        node_view(None, Scrape("http://10.0.0.2:8765", 1.0, error="timed out")),
    ]

    lines = render(views, "12:00:00", width=200)

    assert lines[0].startswith("roomcast top - 2 nodes - 12:00:00")
    assert lines[3].startswith("n-1") and "12.3k" in lines[3]
    assert "http://10.0.0.2:8765" in lines[4] and lines[4].endswith("down (timed out)")
    assert lines[-1].startswith("1 up") and "1 down" in lines[-1]


def test_screen_lines_are_cut_to_the_terminal_width() -> None:
    lines = render([node_view(None, reading(1.0))], "12:00:00", width=40)

    assert max(map(len, lines)) <= 40
