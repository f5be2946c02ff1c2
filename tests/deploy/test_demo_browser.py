"""The demo chat in a real headless Chromium, through nginx, on three nodes.

The page runs on the TypeScript SDK's browser build (``sdk/typescript``),
which ``deploy/local-cluster`` builds into ``deploy/demo`` when missing.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator

import pytest

from tests.deploy.cdp import Chromium, DevTools, Page
from tests.deploy.conftest import ClusterFactory
from tests.support.processes import REPO
from tests.typescript.conftest import require

pytestmark = [pytest.mark.browser, pytest.mark.redis]

ARTIFACTS = REPO / "artifacts"


@pytest.fixture(autouse=True)
def sdk_build_tools() -> None:
    """The page runs on the TypeScript SDK, which local-cluster builds with npm."""
    require("npm")


@pytest.fixture
async def devtools(chromium: Chromium) -> AsyncIterator[DevTools]:
    """A DevTools connection of this test's own; its pages close with it."""
    connection = await DevTools.connect(chromium)
    yield connection
    await connection.close()


async def open_chat(devtools: DevTools, url: str, name: str, room: str) -> Page:
    """Open the demo, join ``room`` as ``name`` as a person would; wait for its node."""
    page = await devtools.new_page()
    await page.goto(f"{url}?name={name}&room={room}")
    await page.type_into("#room", room)
    await page.press_enter()
    await page.wait_for(
        "document.querySelector('#room-title').textContent === '#' + " + json.dumps(room)
    )
    return page


async def node_of(page: Page) -> str:
    """The node the page says it is connected to."""
    node: str = await page.wait_for(
        "document.querySelector('#status').dataset.state === 'open'"
        " && document.querySelector('#node').textContent"
    )
    return node


async def say(page: Page, text: str) -> None:
    """Type ``text`` in the message box and press Enter; wait until it was accepted."""
    await page.type_into("#text", text)
    await page.press_enter()
    await page.wait_for(
        "[...document.querySelectorAll('#messages li[data-kind=own]')].some(li =>"
        f" li.querySelector('.text').textContent === {json.dumps(text)}"
        " && li.dataset.delivery === 'sent')"
    )


async def heard(page: Page, name: str, text: str, timeout: float = 10.0) -> None:
    """Wait until ``page`` shows ``text`` from ``name``."""
    await page.wait_for(
        "[...document.querySelectorAll('#messages li[data-kind=message]')].some(li =>"
        f" li.querySelector('.who').textContent === {json.dumps(name)}"
        f" && li.querySelector('.text').textContent === {json.dumps(text)})",
        timeout,
    )


async def lines(page: Page, kind: str) -> list[str]:
    """The texts of the lines of ``kind`` (message, own, history, system) on ``page``."""
    texts: list[str] = await page.evaluate(
        f"[...document.querySelectorAll('#messages li[data-kind={kind}] .text')]"
        ".map(el => el.textContent)"
    )
    return texts


async def members(page: Page) -> list[str]:
    """The lines of the page's member list."""
    shown: list[str] = await page.evaluate(
        "[...document.querySelectorAll('#members li')].map(li => li.textContent)"
    )
    return shown


async def test_demo_chat_moves_to_another_node_when_its_node_stops(
    new_cluster: ClusterFactory, devtools: DevTools
) -> None:
    cluster = new_cluster()
    alice = await open_chat(devtools, cluster.http, "alice", "e2e")
    alice_node = await node_of(alice)
    # least_conn sends the second page elsewhere; reopen a bounded number of
    # times should it not.
    for _ in range(5):
        bob = await open_chat(devtools, cluster.http, "bob", "e2e")
        bob_node = await node_of(bob)
        if bob_node != alice_node:
            break
        await bob.close()
    assert bob_node != alice_node

    await say(alice, "hello from alice")
    await heard(bob, "alice", "hello from alice")

    os.kill(cluster.node_pid(bob_node), signal.SIGTERM)
    await say(alice, "while you were away")
    await bob.wait_for(
        "document.querySelector('#status').dataset.state === 'open'"
        f" && document.querySelector('#node').textContent !== {json.dumps(bob_node)}"
        " && [...document.querySelectorAll('#messages li[data-kind=system]')].some(li =>"
        " li.textContent.includes('joined #e2e again'))",
        timeout=20,
    )
    await heard(bob, "alice", "while you were away")
    await say(bob, "bob is back")
    await heard(alice, "bob", "bob is back")
    await say(alice, "welcome back")
    await heard(bob, "alice", "welcome back")

    assert await node_of(bob) != bob_node
    # Each line once: nothing lost, nothing replayed twice.
    assert await lines(bob, "message") == [
        "hello from alice",
        "while you were away",
        "welcome back",
    ]
    await bob.screenshot(ARTIFACTS / "demo-bob-after-failover.png")
    await alice.screenshot(ARTIFACTS / "demo-alice.png")
    assert alice.errors == [] and bob.errors == []


async def test_demo_shows_names_and_text_as_text_not_html(
    new_cluster: ClusterFactory, devtools: DevTools
) -> None:
    cluster = new_cluster(nodes=1)
    mallory = await open_chat(devtools, cluster.http, "<b>mallory</b>", "xss")
    reader = await open_chat(devtools, cluster.http, "reader", "xss")
    markup = "<img src=x onerror=\"document.title='owned'\">"

    await say(mallory, markup)
    await heard(reader, "<b>mallory</b>", markup)

    assert (
        await reader.evaluate("document.querySelectorAll('#messages img, #messages b').length") == 0
    )
    assert await reader.evaluate("document.title") == "roomcast demo"


async def test_demo_shows_recent_history_on_join_and_who_is_in_the_room(
    new_cluster: ClusterFactory, devtools: DevTools
) -> None:
    cluster = new_cluster(nodes=2)
    alice = await open_chat(devtools, cluster.http, "alice", "past")
    await say(alice, "first")
    await say(alice, "second")

    bob = await open_chat(devtools, cluster.http, "bob", "past")
    await bob.wait_for("document.querySelectorAll('#messages li[data-kind=history]').length === 2")
    assert await lines(bob, "history") == ["first", "second"]
    await bob.wait_for("document.querySelectorAll('#members li').length === 2")
    bob_session = await bob.evaluate("document.querySelector('#session').textContent")
    assert any(line.startswith("alice (") for line in await members(bob))
    assert any(line.endswith("(you)") for line in await members(bob))

    await alice.wait_for("document.querySelectorAll('#members li').length === 2")
    assert any(bob_session[:8] in line for line in await members(alice))
    await bob.close()
    await alice.wait_for("document.querySelectorAll('#members li').length === 1")
    assert await alice.evaluate("document.querySelector('#members-title').textContent") == (
        "In #past: 1"
    )
