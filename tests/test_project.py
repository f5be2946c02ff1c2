"""The README and CI keep their promises."""

from __future__ import annotations

import re
import tomllib
from typing import Any

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


@pytest.mark.parametrize("contract", ["PROTOCOL.md", "HISTORY-PRESENCE.md"])
def test_docs_carry_the_contract_unchanged(contract: str) -> None:
    shared = REPO.parent / "shared" / contract
    if not shared.exists():
        pytest.skip(f"no shared/{contract} beside this checkout to compare with")
    assert (REPO / "docs" / contract).read_text() == shared.read_text()


def _pyproject() -> dict[str, Any]:
    with (REPO / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def _coverage_floors() -> list[tuple[list[str], int]]:
    """The ``coverage report --include=... --fail-under=N`` steps of .ci/run."""
    steps = re.findall(
        r"^coverage report --include='([^']+)' --fail-under=(\d+)",
        (REPO / ".ci" / "run").read_text(),
        re.M,
    )
    return [(include.split(","), int(floor)) for include, floor in steps]


def test_the_readme_test_command_measures_coverage_with_a_floor() -> None:
    config = _pyproject()
    addopts = config["tool"]["pytest"]["ini_options"]["addopts"].split()
    coverage = config["tool"]["coverage"]

    assert "--cov" in addopts
    assert {"broker", "protocol"} <= set(coverage["run"]["source"])
    assert "subprocess" in coverage["run"]["patch"]  # the broker processes count too
    assert coverage["report"]["fail_under"] >= 90


def test_ci_enforces_the_module_floors_after_the_test_command() -> None:
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    test_line = max(i for i, line in enumerate(lines) if line.endswith("&& pytest"))
    floor_lines = [i for i, line in enumerate(lines) if line.startswith("coverage report")]
    included = {path for paths, floor in _coverage_floors() if floor == 100 for path in paths}

    assert floor_lines
    assert min(floor_lines) > test_line
    assert {"protocol/*", "broker/session.py", "broker/hub.py", "broker/outbox.py"} <= included


def test_the_readme_states_every_coverage_floor() -> None:
    readme = _readme()
    overall = _pyproject()["tool"]["coverage"]["report"]["fail_under"]

    assert f"| {overall} % |" in readme
    for paths, floor in _coverage_floors():
        row = next(line for line in readme.splitlines() if f"`{paths[0]}`" in line)
        assert row.endswith(f"| {floor} % |"), row
        assert all(f"`{path}`" in row for path in paths), row


def test_no_two_test_modules_share_a_file_name() -> None:
    names = [path.name for path in (REPO / "tests").rglob("test_*.py")]

    assert sorted({name for name in names if names.count(name) > 1}) == []


def test_readme_links_only_to_files_in_the_repository() -> None:
    # A clone has no shared/ beside it: every figure the README cites must
    # come with the repository (docs/PEERS.md for the comparisons).
    readme = _readme()
    targets = re.findall(r"\]\(([^)#:]+)\)", readme)

    assert "docs/PEERS.md" in targets
    assert [t for t in targets if not (REPO / t).exists()] == []
    assert "shared/" not in readme
