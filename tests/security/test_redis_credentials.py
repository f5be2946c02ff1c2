"""``broker serve`` against a Redis that refuses it: exit code 2 and one line
that says which (authentication, unreachable), never a traceback and never
the password (issue 11)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.processes import REPO, RedisServer, free_port

pytestmark = pytest.mark.redis

PASSWORD = "serve-test-password-1234"
# What a node logs while starting ("2026-12-01 02:05:00,123 WARNING ...").
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


def serve(redis_url: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """Run ``broker serve`` with ``redis_url`` (in the environment, as the
    README advises) to its end: it must not start serving."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    return subprocess.run(
        [sys.executable, "-m", "broker", "serve", "--port", str(free_port()), *flags],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**environ, "BROKER_REDIS_URL": redis_url},
        timeout=30,
    )


def only_line(result: subprocess.CompletedProcess[str]) -> str:
    """Exit code 2 and exactly one line on stderr, which is returned."""
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def locked_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own that requires ``PASSWORD``."""
    server = RedisServer(extra_args=("--requirepass", PASSWORD)).start()
    yield server
    server.kill()


def test_a_wrong_password_exits_2_with_one_line_about_authentication(
    locked_redis: RedisServer,
) -> None:
    url = f"redis://:wrong-{PASSWORD}@127.0.0.1:{locked_redis.port}/0"

    line = only_line(serve(url, "--log-level", "error"))

    assert line.startswith(
        f"broker serve: Redis authentication failed at redis://127.0.0.1:{locked_redis.port}"
    ), line
    assert "WRONGPASS" in line
    assert PASSWORD not in line


def test_an_unknown_acl_user_is_named(locked_redis: RedisServer) -> None:
    url = f"redis://nobody:{PASSWORD}@127.0.0.1:{locked_redis.port}/0"

    line = only_line(serve(url, "--log-level", "error"))

    assert "authentication failed" in line
    assert "for user 'nobody'" in line
    assert PASSWORD not in line


def test_the_refusal_is_the_last_line_after_the_startup_log(locked_redis: RedisServer) -> None:
    url = f"redis://:wrong@127.0.0.1:{locked_redis.port}/0"

    result = serve(url)

    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    *logged, last = result.stderr.splitlines()
    assert last.startswith("broker serve: Redis authentication failed"), last
    assert all(LOG_LINE.match(line) for line in logged), logged


def test_an_unreachable_port_exits_2_with_one_line_naming_the_address() -> None:
    port = free_port()  # nothing listens there

    line = only_line(serve(f"redis://127.0.0.1:{port}/0", "--log-level", "error"))

    assert line == (
        f"broker serve: cannot reach Redis at redis://127.0.0.1:{port}: "
        "[Errno 111] Connection refused"
    )
