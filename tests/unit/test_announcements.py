"""broker.announcements: joined/left go out through the node's publish; those
the backend refused are kept and sent again; opposite changes cancel out."""

from __future__ import annotations

import asyncio
import json

import pytest

from broker.announcements import Announcements
from broker.backends.base import BackendUnavailable, Membership, OutcomeUnknown
from tests.support.fakes import next_turn

ALICE = Membership("lobby", "s-1", "alice")
ANONYMOUS = Membership("lobby", "s-2", None)


class Publisher:
    """A publish function whose futures the test settles by hand."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, object], asyncio.Future[None]]] = []

    def __call__(self, room: str, exclude: str, payload: bytes) -> asyncio.Future[None]:
        accepted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent.append((room, exclude, json.loads(payload), accepted))
        return accepted

    def types(self) -> list[object]:
        return [frame["type"] for _, _, frame, _ in self.sent]

    async def refuse_last(self, error: Exception | None = None) -> None:
        self.sent[-1][3].set_exception(error or BackendUnavailable("down"))
        await next_turn()

    async def accept_last(self) -> None:
        self.sent[-1][3].set_result(None)
        await next_turn()


@pytest.fixture
def publisher() -> Publisher:
    return Publisher()


@pytest.fixture
def announcements(publisher: Publisher) -> Announcements:
    return Announcements(publisher)


async def test_joined_is_published_to_the_room_excluding_the_joiner(
    announcements: Announcements, publisher: Publisher
) -> None:
    announcements.joined(ALICE)
    room, exclude, frame, _ = publisher.sent[0]
    assert (room, exclude) == ("lobby", "s-1")
    assert frame == {"type": "joined", "room": "lobby", "session": "s-1", "user": "alice"}


async def test_an_anonymous_left_carries_no_user(
    announcements: Announcements, publisher: Publisher
) -> None:
    announcements.left(ANONYMOUS)
    assert publisher.sent[0][2] == {"type": "left", "room": "lobby", "session": "s-2"}


async def test_an_accepted_announcement_is_not_kept(
    announcements: Announcements, publisher: Publisher
) -> None:
    announcements.joined(ALICE)
    await publisher.accept_last()
    assert len(announcements) == 0


async def test_a_refused_announcement_is_kept(
    announcements: Announcements, publisher: Publisher
) -> None:
    announcements.joined(ALICE)
    await publisher.refuse_last()
    assert len(announcements) == 1


async def test_an_announcement_of_unknown_outcome_is_not_sent_again(
    announcements: Announcements, publisher: Publisher
) -> None:
    announcements.joined(ALICE)
    await publisher.refuse_last(OutcomeUnknown("timeout"))
    assert len(announcements) == 0


async def test_retry_publishes_what_was_refused_once_more(
    announcements: Announcements, publisher: Publisher
) -> None:
    announcements.joined(ALICE)
    await publisher.refuse_last()
    assert announcements.retry() == 1
    assert publisher.types() == ["joined", "joined"]
    assert len(announcements) == 0


async def test_a_retry_refused_again_is_kept_again(
    announcements: Announcements, publisher: Publisher
) -> None:
    announcements.joined(ALICE)
    await publisher.refuse_last()
    announcements.retry()
    await publisher.refuse_last()
    assert len(announcements) == 1


async def test_left_cancels_a_joined_that_was_never_sent(
    announcements: Announcements, publisher: Publisher
) -> None:
    announcements.joined(ALICE)
    await publisher.refuse_last()
    assert announcements.left(ALICE) is None
    assert len(announcements) == 0
    assert publisher.types() == ["joined"]


async def test_a_change_and_its_opposite_both_refused_cancel_out(
    announcements: Announcements, publisher: Publisher
) -> None:
    announcements.joined(ALICE)
    announcements.left(ALICE)  # published while the joined is still pending
    publisher.sent[0][3].set_exception(BackendUnavailable("down"))
    publisher.sent[1][3].set_exception(BackendUnavailable("down"))
    await next_turn()
    assert len(announcements) == 0


async def test_the_ledger_drops_its_oldest_change_past_its_limit(publisher: Publisher) -> None:
    announcements = Announcements(publisher, limit=2)
    for session in ("s-1", "s-2", "s-3"):
        announcements.joined(Membership("lobby", session, None))
        await publisher.refuse_last()
    announcements.retry()
    assert [exclude for _, exclude, _, _ in publisher.sent[3:]] == ["s-2", "s-3"]


async def test_lost_members_are_announced_as_left(
    announcements: Announcements, publisher: Publisher
) -> None:
    announcements.lost([ALICE, ANONYMOUS])
    assert publisher.types() == ["left", "left"]


async def test_revived_members_are_announced_as_joined(
    announcements: Announcements, publisher: Publisher
) -> None:
    announcements.revived([ALICE])
    assert publisher.types() == ["joined"]


async def test_a_cancelled_publish_is_not_kept(
    announcements: Announcements, publisher: Publisher
) -> None:
    announcements.joined(ALICE)
    publisher.sent[0][3].cancel()
    await next_turn()
    assert len(announcements) == 0
