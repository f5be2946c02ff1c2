"""The built browser bundle (``dist/roomcast.min.js``) in headless Chromium:
two pages on different nodes of a cluster chat; one node is killed; its
page reconnects to the other node and recovers every message said while it
was away, in order, none twice.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import BrokerFactory
from tests.deploy.cdp import Chromium, DevTools, JavaScriptError, Page
from tests.support.processes import RedisServer

pytestmark = [pytest.mark.browser, pytest.mark.redis]

ROOM = "chat"

# The page: the bundle as a user's page loads it, one client on the nodes
# named in ?ws=, what it hears kept in window.heard. The first backoff is its
# full bound (1 s), so that the other page speaks while this one is away.
PAGE = """<!doctype html>
<meta charset="utf-8">
<title>roomcast bundle</title>
<script type="module">
import { connect } from "/roomcast.min.js";
const urls = new URLSearchParams(location.search).getAll("ws");
const client = connect(urls, { random: () => 1, reconnect: { initialDelay: 1000 } });
window.heard = [];
window.events = [];
client.on("message", (m) => window.heard.push({ body: m.body, offset: m.offset }));
client.on("disconnected", (e) => window.events.push({ type: e.type, code: e.code }));
client.on("reconnected", (e) =>
  window.events.push({ type: e.type, node: e.node, recovered: e.recovered }));
await client.ready;
await client.join("chat");
window.client = client;
</script>
"""


@pytest.fixture
def site(sdk: Path) -> Iterator[str]:
    """An HTTP server of the page and the bundle; yields its origin."""
    files = {
        "/": (PAGE.encode(), "text/html"),
        "/roomcast.min.js": ((sdk / "dist" / "roomcast.min.js").read_bytes(), "text/javascript"),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, kind = files.get(self.path.split("?")[0], (b"", "text/plain"))
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
async def devtools(chromium: Chromium) -> AsyncIterator[DevTools]:
    """A DevTools connection of this test's own; its pages close with it."""
    connection = await DevTools.connect(chromium)
    yield connection
    await connection.close()


async def open_page(devtools: DevTools, site: str, *urls: str) -> Page:
    """A page whose client uses ``urls`` (in turn), once it joined the room."""
    page = await devtools.new_page()
    await page.goto(site + "/?" + "&".join(f"ws={url}" for url in urls))
    await page.wait_for("window.client && window.client.connected")
    return page


async def say(page: Page, body: str) -> None:
    """Say ``body`` from ``page`` and wait for the broker's ok."""
    await page.evaluate(f"window.client.say({json.dumps(ROOM)}, {json.dumps(body)})")


async def heard(page: Page, count: int, timeout: float = 15.0) -> list[str]:
    """The bodies ``page`` heard, once there are ``count``."""
    await page.wait_for(f"window.heard.length >= {count}", timeout)
    bodies: list[str] = await page.evaluate("window.heard.map((m) => m.body)")
    return bodies


async def test_a_page_whose_node_is_killed_recovers_every_message_on_the_other_node(
    broker: BrokerFactory, redis_server: RedisServer, site: str, devtools: DevTools
) -> None:
    first = broker("--redis-url", redis_server.url)
    second = broker("--redis-url", redis_server.url)
    alice = await open_page(devtools, site, first.url)
    bob = await open_page(devtools, site, second.url, first.url)

    await say(alice, "hello bob")
    assert await heard(bob, 1) == ["hello bob"]
    await say(bob, "hello alice")
    assert await heard(alice, 1) == ["hello alice"]

    second.kill()
    await bob.wait_for("window.events.some((e) => e.type === 'disconnected')")
    meanwhile = [f"while you were away {n}" for n in range(10)]
    for text in meanwhile:
        await say(alice, text)
    assert await bob.evaluate("window.events.some((e) => e.type === 'reconnected')") is False

    events = await bob.wait_for(
        "window.events.some((e) => e.type === 'reconnected') && window.events", timeout=15
    )
    assert events == [
        {"type": "disconnected", "code": 1006},
        {
            "type": "reconnected",
            "node": await alice.evaluate("window.client.node"),
            "recovered": {ROOM: True},
        },
    ]
    await say(alice, "live again")
    assert await heard(bob, 12) == ["hello bob", *meanwhile, "live again"]
    offsets = await bob.evaluate("window.heard.map((m) => m.offset)")
    assert offsets == sorted(set(offsets))

    await say(bob, "back")
    assert await heard(alice, 2) == ["hello alice", "back"]
    assert alice.errors == [] and bob.errors == []


async def test_evaluate_reports_javascript_errors(site: str, devtools: DevTools) -> None:
    # The harness itself: a failing expression must fail the test that runs it.
    page = await devtools.new_page()
    await page.goto(site + "/")

    with pytest.raises(JavaScriptError, match="boom"):
        await page.evaluate("Promise.reject(new Error('boom'))")
