"""The README and CI keep their promises."""

from __future__ import annotations

import re

import pytest

from broker.config import OPTIONS
from tests.support.processes import REPO


def _readme() -> str:
    return (REPO / "README.md").read_text()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    commands = re.findall(r"```sh\n(.*?)\n```", _readme(), re.S)
    test_command = next(c for c in commands if "pytest" in c)
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


def test_readme_documents_every_option() -> None:
    readme = _readme()
    for option in OPTIONS:
        assert f"`{option.flag}`" in readme
        assert f"`{option.env}`" in readme


def test_docs_carry_the_contract_unchanged() -> None:
    shared = REPO.parent / "shared" / "PROTOCOL.md"
    if not shared.exists():
        pytest.skip("no shared/PROTOCOL.md beside this checkout to compare with")
    assert (REPO / "docs" / "PROTOCOL.md").read_text() == shared.read_text()
