"""broker.hub: local membership and fan-out, with outboxes that record frames."""

from __future__ import annotations

from broker.frames import text_frame
from broker.hub import Hub
from tests.support.fakes import RecordingOutbox


def hub_with(room: str, *sessions: str) -> tuple[Hub, dict[str, RecordingOutbox]]:
    hub = Hub()
    outboxes = {session: RecordingOutbox() for session in sessions}
    for session, outbox in outboxes.items():
        hub.add(room, session, outbox)
    return hub, outboxes


def test_fanout_reaches_every_member_but_the_excluded_one() -> None:
    hub, outboxes = hub_with("lobby", "s-1", "s-2", "s-3")

    delivered = hub.fanout("lobby", "s-1", b'{"type":"message"}')

    assert delivered == 2
    assert outboxes["s-1"].frames == []
    assert outboxes["s-2"].payloads == [b'{"type":"message"}']
    assert outboxes["s-3"].payloads == [b'{"type":"message"}']


def test_fanout_hands_the_same_frame_object_to_every_member() -> None:
    hub, outboxes = hub_with("lobby", "s-1", "s-2", "s-3", "s-4")

    hub.fanout("lobby", "s-1", b"payload")

    frames = [outboxes[s].frames[0] for s in ("s-2", "s-3", "s-4")]
    assert frames[0] == text_frame(b"payload")
    assert all(frame is frames[0] for frame in frames)


def test_fanout_excluding_a_non_member_reaches_everyone() -> None:
    hub, _ = hub_with("lobby", "s-1", "s-2")
    assert hub.fanout("lobby", "s-remote", b"x") == 2


def test_fanout_to_a_room_without_local_members_delivers_nothing() -> None:
    hub, outboxes = hub_with("lobby", "s-1")
    assert hub.fanout("elsewhere", "s-9", b"x") == 0
    assert outboxes["s-1"].frames == []


def test_fanout_keeps_order_per_member() -> None:
    hub, outboxes = hub_with("lobby", "s-1", "s-2")
    for i in range(5):
        hub.fanout("lobby", "s-1", str(i).encode())
    assert outboxes["s-2"].payloads == [b"0", b"1", b"2", b"3", b"4"]


def test_fanout_stays_within_its_room() -> None:
    hub = Hub()
    in_room, elsewhere = RecordingOutbox(), RecordingOutbox()
    hub.add("a", "s-1", in_room)
    hub.add("b", "s-2", elsewhere)
    hub.fanout("a", "s-0", b"x")
    assert (len(in_room.frames), len(elsewhere.frames)) == (1, 0)


def test_add_of_a_new_member_returns_true() -> None:
    assert Hub().add("lobby", "s-1", RecordingOutbox())


def test_add_of_a_member_twice_returns_false() -> None:
    hub = Hub()
    hub.add("lobby", "s-1", RecordingOutbox())
    assert not hub.add("lobby", "s-1", RecordingOutbox())
    assert hub.members("lobby") == ("s-1",)


def test_member_added_twice_receives_once() -> None:
    hub = Hub()
    outbox = RecordingOutbox()
    hub.add("lobby", "s-1", outbox)
    hub.add("lobby", "s-1", outbox)
    hub.fanout("lobby", "s-0", b"x")
    assert len(outbox.frames) == 1


def test_removed_member_no_longer_receives() -> None:
    hub, outboxes = hub_with("lobby", "s-1", "s-2")
    hub.remove("lobby", "s-2")
    hub.fanout("lobby", "s-0", b"x")
    assert outboxes["s-2"].frames == []


def test_room_vanishes_when_its_last_member_leaves() -> None:
    hub, _ = hub_with("lobby", "s-1", "s-2")
    hub.remove("lobby", "s-1")
    assert hub.has_room("lobby")
    hub.remove("lobby", "s-2")
    assert not hub.has_room("lobby")
    assert hub.rooms() == ()
    assert hub.stats()["rooms"] == 0


def test_remove_of_a_non_member_returns_false() -> None:
    hub, _ = hub_with("lobby", "s-1")
    assert not hub.remove("lobby", "s-2")
    assert not hub.remove("nowhere", "s-1")
    assert hub.remove("lobby", "s-1")


def test_stats_count_memberships_and_deliveries() -> None:
    hub, _ = hub_with("lobby", "s-1", "s-2", "s-3")
    hub.fanout("lobby", "s-1", b"x")
    stats = hub.stats()
    assert (stats["rooms"], stats["memberships"]) == (1, 3)
    assert (stats["fanouts"], stats["deliveries"]) == (1, 2)
