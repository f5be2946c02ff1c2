"""protocol.rules: room names are 1 to 128 of ``A-Z a-z 0-9 _ . : @ -``."""

from __future__ import annotations

import string

import pytest

from protocol import is_valid_room
from protocol.rules import ROOM_MAX_LENGTH

ALLOWED = string.ascii_letters + string.digits + "_.:@-"


@pytest.mark.parametrize("name", ["a", "lobby", "Z9", "chat.eu:team@acme-1_x", ALLOWED])
def test_names_from_the_allowed_characters_are_valid(name: str) -> None:
    assert is_valid_room(name)


def test_name_of_128_characters_is_valid() -> None:
    assert ROOM_MAX_LENGTH == 128
    assert is_valid_room("r" * 128)


def test_name_of_129_characters_is_invalid() -> None:
    assert not is_valid_room("r" * 129)


def test_empty_name_is_invalid() -> None:
    assert not is_valid_room("")


def test_trailing_newline_is_invalid() -> None:
    assert not is_valid_room("lobby\n")


@pytest.mark.parametrize("name", ["café", "ロビー", "a\u200bb", "\uff41", "٣"])
def test_unicode_letters_and_digits_are_invalid(name: str) -> None:
    assert not is_valid_room(name)


@pytest.mark.parametrize("char", sorted(set(string.printable) - set(ALLOWED)))
def test_every_other_printable_ascii_character_is_invalid(char: str) -> None:
    assert not is_valid_room(f"a{char}b")
