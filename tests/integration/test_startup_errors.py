"""``broker serve`` refuses a setting it cannot use before anything starts:
exit code 2, one line on stderr naming the option (flag and variable) and
what is wrong, and never a Python traceback (issue 16)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping

import pytest

from tests.support.processes import REPO, free_port

SERVE = (sys.executable, "-m", "broker", "serve")
# What a node logs while starting ("2026-12-01 02:05:00,123 WARNING ...").
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


def serve(*flags: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``broker serve`` to its end (it must not start serving)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    return subprocess.run(
        [*SERVE, *flags],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**environ, **(env or {})},
        timeout=30,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    """Exit code 2, and stderr is exactly ``broker serve: {expected}...`` on one line."""
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"broker serve: {expected}"), lines[0]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--port", "-1"), "--port (BROKER_PORT): must be from 1 to 65535, not -1"),
        (("--port", "65536"), "--port (BROKER_PORT): must be from 1 to 65535, not 65536"),
        (("--port", "70000"), "--port (BROKER_PORT): must be from 1 to 65535, not 70000"),
        (
            ("--max-connections", "-1"),
            "--max-connections (BROKER_MAX_CONNECTIONS): must be at least 0, not -1",
        ),
        (
            ("--max-message-size", "-5"),
            "--max-message-size (BROKER_MAX_MESSAGE_SIZE): must be at least 1, not -5",
        ),
        (
            ("--redis-url", "nonsense"),
            "--redis-url (BROKER_REDIS_URL): must be a redis://, rediss:// or unix:// URL",
        ),
        (
            ("--log-level", "verbose"),
            "--log-level (BROKER_LOG_LEVEL): must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        ),
        (
            ("--jwt-secret", "too-short-a-secret"),
            "--jwt-secret (BROKER_JWT_SECRET): must be at least 32 bytes long",
        ),
        (("--workers", "0"), "--workers (BROKER_WORKERS): must be at least 1, or 'auto'"),
        (("--log-format", "xml"), "--log-format (BROKER_LOG_FORMAT): must be one of text, json"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else "",
)
def test_bad_flag_is_one_line_and_exit_code_2(flags: tuple[str, ...], expected: str) -> None:
    assert_one_line(serve(*flags), expected)


def test_bad_variable_is_reported_like_a_bad_flag() -> None:
    result = serve(env={"BROKER_PORT": "70000"})

    assert_one_line(result, "--port (BROKER_PORT): must be from 1 to 65535, not 70000")


def test_missing_public_key_file_is_one_line() -> None:
    result = serve("--jwt-public-key", "/nonexistent/key.pem")

    assert_one_line(result, "cannot read the JWT public key '/nonexistent/key.pem'")


def test_several_workers_without_redis_is_one_line() -> None:
    assert_one_line(serve("--workers", "2"), "--workers > 1 needs --redis-url")


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port that something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_port_in_use_is_one_line_after_the_startup_log(busy_port: int) -> None:
    result = serve("--port", str(busy_port))

    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    *logged, last = result.stderr.splitlines()
    assert last == f"broker serve: cannot listen on 127.0.0.1:{busy_port}: address already in use"
    assert all(LOG_LINE.match(line) for line in logged), logged


def test_port_in_use_is_the_only_line_when_the_log_is_quiet(busy_port: int) -> None:
    result = serve("--port", str(busy_port), "--log-level", "error")

    assert_one_line(result, f"cannot listen on 127.0.0.1:{busy_port}: address already in use")


def test_unknown_host_is_one_line() -> None:
    result = serve("--host", "no-such-host.invalid", "--log-level", "error")

    assert_one_line(result, "cannot listen on no-such-host.invalid:8765: ")


@pytest.mark.redis
def test_redis_down_at_start_is_one_line() -> None:
    # Documented choice (README, "Failure modes"): a node whose Redis is down
    # at start exits at once rather than serving 503 and retrying, so that an
    # orchestrator sees the failure and its restart policy applies.
    result = serve("--redis-url", f"redis://127.0.0.1:{free_port()}/0", "--log-level", "error")

    assert_one_line(result, "")
