"""Plans: who connects where and who says what, per scenario."""

from __future__ import annotations

import pytest

from broker.bench.params import BenchParams
from broker.bench.plans import make_plan

URLS = ("ws://127.0.0.1:1/ws", "ws://127.0.0.1:2/ws")


def test_fanout_gives_the_publisher_a_worker_of_its_own() -> None:
    plan = make_plan(BenchParams("fanout", members=10, clients_procs=3), URLS)

    publisher, *members = plan.setups
    assert [c.pub for c in publisher.conns] == [0]
    assert plan.roles == ["publisher", "members", "members", "members"]
    assert sorted(len(s.conns) for s in members) == [3, 3, 4]
    assert all(c.pub is None for s in members for c in s.conns)
    assert all(s.publishers == {"bench-fanout": [0]} for s in plan.setups)


def test_fanout_spreads_members_over_the_nodes_round_robin() -> None:
    plan = make_plan(BenchParams("fanout", members=10, clients_procs=1), URLS)

    urls = [c.url for c in plan.setups[1].conns]
    assert urls.count(URLS[0]) == urls.count(URLS[1]) == 5


def test_fanout_rate_is_offered_deliveries_so_says_are_divided_by_members() -> None:
    plan = make_plan(BenchParams("fanout", members=1000, rate=100_000.0), URLS)

    assert plan.offered_deliveries_per_s == 100_000.0
    assert plan.offered_says_per_s == pytest.approx(100.0)
    assert all(s.rate == pytest.approx(100.0) for s in plan.setups)


def test_fanout_without_rate_saturates() -> None:
    plan = make_plan(BenchParams("fanout", members=10), URLS)

    assert plan.offered_says_per_s is None
    assert all(s.rate is None for s in plan.setups)


def test_chat_makes_every_member_a_publisher_of_its_room() -> None:
    params = BenchParams("chat", rooms=3, room_size=4, say_rate=2.0, clients_procs=2)
    plan = make_plan(params, URLS)

    conns = [c for s in plan.setups for c in s.conns]
    assert len(conns) == 12
    assert sorted(c.pub for c in conns if c.pub is not None) == list(range(12))
    assert plan.setups[0].publishers == {
        "bench-chat-0": [0, 1, 2, 3],
        "bench-chat-1": [4, 5, 6, 7],
        "bench-chat-2": [8, 9, 10, 11],
    }
    assert all(0 <= c.phase < 0.5 for c in conns)
    assert plan.offered_says_per_s == 24.0
    assert plan.offered_deliveries_per_s == 24.0 * 3


def test_chat_phases_are_repeatable() -> None:
    params = BenchParams("chat", rooms=2, room_size=3)

    assert make_plan(params, URLS) == make_plan(params, URLS)


def test_idle_has_one_warm_up_publisher_per_room_and_no_messages() -> None:
    plan = make_plan(BenchParams("idle", connections=25, room_size=10), URLS)

    conns = [c for s in plan.setups for c in s.conns]
    assert len(conns) == 25
    assert len({c.room for c in conns}) == 3
    assert plan.publishers == 3
    assert all(s.messages == 0 for s in plan.setups)


def test_connect_says_nothing() -> None:
    plan = make_plan(BenchParams("connect", connections=25), URLS)

    assert plan.publishers == 0
    assert all(c.pub is None for s in plan.setups for c in s.conns)


@pytest.mark.parametrize(
    ("connections", "workers"), [(10, 1), (500, 1), (501, 2), (1001, 3), (5000, 4)]
)
def test_default_workers_are_about_one_per_500_connections(connections: int, workers: int) -> None:
    assert BenchParams("connect", connections=connections).worker_count() == workers
