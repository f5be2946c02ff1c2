"""``python -m protocol schema`` prints the JSON Schema; anything else is a
usage error (exit status 2)."""

from __future__ import annotations

import runpy
import sys

import pytest

from protocol.__main__ import main
from protocol.schema import json_schema_text


def test_schema_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0

    assert capsys.readouterr().out == json_schema_text()


@pytest.mark.parametrize("argv", [[], ["schemas"], ["schema", "extra"]])
def test_anything_else_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2

    assert capsys.readouterr().err == "usage: python -m protocol schema\n"


def test_run_as_a_module_it_exits_with_mains_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["protocol", "schema"])
    # Run afresh, as `python -m` does, not from the module imported above.
    monkeypatch.delitem(sys.modules, "protocol.__main__")

    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("protocol", run_name="__main__", alter_sys=True)

    assert exit_info.value.code == 0
    assert capsys.readouterr().out == json_schema_text()
