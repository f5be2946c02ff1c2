"""The README's SDK examples run as printed (against a node of our own): the
first one prints the message, "Who's online" keeps its list current."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import pytest

from roomcast_client import Client, Disconnected, Reconnect, Reconnected
from tests.conftest import BrokerFactory
from tests.sdk.conftest import Restarter, SdkFactory, next_lifecycle
from tests.sdk.readme import README_URL, online_example, sdk_example
from tests.support.processes import REPO


def test_readme_sdk_example_prints_the_message(broker: BrokerFactory) -> None:
    node = broker()
    example = sdk_example()
    assert README_URL in example

    result = subprocess.run(
        [sys.executable, "-c", example.replace(README_URL, node.url)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("{'text': 'hi alice'}\n")
    assert result.stdout.startswith("s-")


class Roster:
    """The mapping the "Who's online" example keeps, waking waiters on every change."""

    def __init__(self) -> None:
        self.online: dict[str, str | None] = {}
        self._changed = asyncio.Event()

    def _touch(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def update(self, members: Iterable[tuple[str, str | None]]) -> None:
        self.online.update(members)
        self._touch()

    def clear(self) -> None:
        self.online.clear()
        self._touch()

    def __setitem__(self, session: str, user: str | None) -> None:
        self.online[session] = user
        self._touch()

    def pop(self, session: str, default: str | None = None) -> str | None:
        try:
            return self.online.pop(session, default)
        finally:
            self._touch()

    async def until(self, expected: Callable[[], dict[str, str | None]]) -> None:
        """Wait (10 s at most) until the mapping equals ``expected()``."""
        async with asyncio.timeout(10):
            while self.online != expected():
                await self._changed.wait()


@pytest.fixture
async def keep_online() -> AsyncIterator[Callable[[Client, str, Roster], None]]:
    """Run the README's ``keep_online`` in a task; all cancelled at the end."""
    namespace: dict[str, Any] = {}
    exec(online_example(), namespace)
    tasks: list[asyncio.Task[None]] = []

    def start(client: Client, room: str, roster: Roster) -> None:
        tasks.append(asyncio.create_task(namespace["keep_online"](client, room, roster)))

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_online_example_follows_joins_and_leaves_after_its_presence_read(
    broker: BrokerFactory, sdk: SdkFactory, keep_online: Callable[[Client, str, Roster], None]
) -> None:
    node = broker()
    watcher, early, late = await sdk(node.url), await sdk(node.url), await sdk(node.url)
    await early.join("chat")
    roster = Roster()

    keep_online(watcher, "chat", roster)
    await late.join("chat")
    await early.leave("chat")

    await roster.until(lambda: {watcher.session: None, late.session: None})


async def test_online_example_reads_presence_again_after_reconnecting(
    broker: BrokerFactory,
    sdk: SdkFactory,
    restart: Restarter,
    keep_online: Callable[[Client, str, Roster], None],
) -> None:
    node = broker()
    fast = Reconnect(initial_delay=0.05, max_delay=0.3)
    watcher, other = await sdk(node.url, reconnect=fast), await sdk(node.url, reconnect=fast)
    await other.join("chat")
    roster = Roster()
    keep_online(watcher, "chat", roster)
    await roster.until(lambda: {watcher.session: None, other.session: None})
    before = set(roster.online)

    node.kill()  # a memory node restarts empty: no Left for the old sessions ever comes
    await restart(node)
    assert isinstance(await next_lifecycle(other), Disconnected)
    assert isinstance(await next_lifecycle(other), Reconnected)

    await roster.until(lambda: {watcher.session: None, other.session: None})
    assert before.isdisjoint(roster.online)


def test_sdk_readme_has_the_readmes_online_example() -> None:
    assert online_example(REPO / "sdk" / "python" / "README.md") == online_example()
