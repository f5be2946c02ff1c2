"""The command lines, run as users run them: ``broker --help``,
``broker serve --help`` and ``python -m protocol schema``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from broker.config import OPTIONS
from tests.support.processes import REPO

BROKER = str(Path(sys.executable).with_name("broker"))


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    # A fixed width so that help text wraps the same on every terminal.
    env = {**os.environ, "COLUMNS": "100"}
    return subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env, timeout=30)


def test_broker_help_lists_the_serve_command() -> None:
    result = run(BROKER, "--help")
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout


def test_broker_serve_help_mentions_every_option_flag_and_variable() -> None:
    result = run(BROKER, "serve", "--help")
    assert result.returncode == 0, result.stderr
    for option in OPTIONS:
        assert option.flag in result.stdout, option.flag
        assert option.env in result.stdout, option.env


def test_python_m_broker_is_the_same_command() -> None:
    module = run(sys.executable, "-m", "broker", "serve", "--help")
    assert module.returncode == 0, module.stderr
    assert module.stdout == run(BROKER, "serve", "--help").stdout


def test_broker_without_a_command_is_a_usage_error() -> None:
    result = run(BROKER)
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_broker_serve_rejects_an_unknown_flag() -> None:
    result = run(BROKER, "serve", "--no-such-flag")
    assert result.returncode == 2
    assert "--no-such-flag" in result.stderr


def test_protocol_schema_prints_json_with_both_unions() -> None:
    result = run(sys.executable, "-m", "protocol", "schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert {"ClientMessage", "ServerMessage"} <= set(schema["$defs"])
    assert {"$ref": "#/$defs/ClientMessage"} in schema["oneOf"]
    assert {"$ref": "#/$defs/ServerMessage"} in schema["oneOf"]


def test_protocol_without_schema_is_a_usage_error() -> None:
    result = run(sys.executable, "-m", "protocol")
    assert result.returncode == 2
    assert "usage" in result.stderr
