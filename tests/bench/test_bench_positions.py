"""A member's view of a room's offsets: every offset after its join position
arrives once, in order, or was given to one of its own says."""

from __future__ import annotations

from broker.bench.positions import MAX_TRACKED_GAP, OffsetCheck


def follow(check: OffsetCheck, *offsets: int, epoch: str = "e-1") -> None:
    """Feed ``offsets`` as the member's hot path does."""
    for offset in offsets:
        if offset == check.last + 1:
            check.last = offset
        else:
            check.jump(offset, epoch)


def test_consecutive_offsets_after_the_join_position_are_clean() -> None:
    check = OffsetCheck()
    check.joined(3, "e-1")

    follow(check, 4, 5, 6)

    assert (check.last, check.gap_count(), check.backwards, check.epoch_changes) == (6, 0, 0, 0)


def test_a_skipped_offset_is_a_gap() -> None:
    check = OffsetCheck()
    check.joined(0, "e-1")

    follow(check, 1, 2, 5)

    assert check.gap_count() == 2
    assert check.last == 5


def test_a_repeated_offset_goes_backwards() -> None:
    check = OffsetCheck()
    check.joined(0, "e-1")

    follow(check, 1, 2, 2, 3)

    assert (check.backwards, check.gap_count()) == (1, 0)


def test_a_late_offset_fills_its_gap_but_still_counts_as_reordered() -> None:
    check = OffsetCheck()
    check.joined(0, "e-1")

    follow(check, 1, 3, 2)

    assert (check.gap_count(), check.backwards) == (0, 1)


def test_own_says_explain_the_offsets_a_member_never_receives() -> None:
    check = OffsetCheck()
    check.joined(0, "e-1")

    check.said(2, "e-1")
    follow(check, 1, 3)

    assert (check.gap_count(), check.backwards) == (0, 0)


def test_an_ok_that_comes_after_the_next_message_still_explains_its_offset() -> None:
    check = OffsetCheck()
    check.joined(0, "e-1")

    follow(check, 1, 3)
    assert check.gap_count() == 1
    check.said(2, "e-1")

    assert check.gap_count() == 0


def test_an_own_offset_the_room_already_delivered_goes_backwards() -> None:
    check = OffsetCheck()
    check.joined(0, "e-1")

    follow(check, 1, 2)
    check.said(2, "e-1")

    assert check.backwards == 1


def test_a_new_epoch_is_counted_and_followed() -> None:
    check = OffsetCheck()
    check.joined(7, "e-1")

    follow(check, 8)
    follow(check, 1, 2, epoch="e-2")

    assert (check.epoch_changes, check.epoch, check.last, check.gap_count()) == (1, "e-2", 2, 0)


def test_without_a_join_position_the_first_offset_sets_it() -> None:
    check = OffsetCheck()

    follow(check, 41, 42)

    assert (check.last, check.epoch, check.gap_count()) == (42, "e-1", 0)


def test_a_huge_jump_is_counted_without_tracking_each_offset() -> None:
    check = OffsetCheck()
    check.joined(0, "e-1")

    follow(check, 1, MAX_TRACKED_GAP + 10)

    assert check.gap_count() == MAX_TRACKED_GAP + 8
    assert not check.gaps
