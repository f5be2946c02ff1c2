"""``deploy/demo/roomcast.js``, the browser SDK, run in headless Chromium.

Each test loads the module into a page and talks either to a real broker
node or to a scripted WebSocket server whose every move the test decides
(close codes, silence, replies out of order), and checks what the SDK did.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.conftest import BrokerFactory
from tests.deploy.cdp import Chromium, DevTools, JavaScriptError, Page
from tests.support.processes import REPO, free_port

pytestmark = pytest.mark.browser

SDK = (REPO / "deploy" / "demo" / "roomcast.js").read_bytes()
WELCOME = {"type": "welcome", "session": "s-test", "node": "n-script", "protocol": 1}

Behaviour = Callable[[ServerConnection, int], Awaitable[None]]


@dataclass
class ScriptedServer:
    """Serves the SDK over HTTP and hands WebSocket connection ``n`` to ``behave``."""

    behave: Behaviour
    server: Server | None = None
    paths: list[str] = field(default_factory=list)
    frames: list[list[dict[str, Any]]] = field(default_factory=list)

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    @property
    def ws(self) -> str:
        """The WebSocket URL."""
        return self.origin.replace("http", "ws", 1) + "/ws"

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/ws"):
            return None
        body, kind = (
            (SDK, "text/javascript") if request.path == "/roomcast.js" else (b"", "text/html")
        )
        headers = Headers([("Content-Type", kind), ("Content-Length", str(len(body)))])
        return Response(200, "OK", headers, body)

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.paths.append(ws.request.path)
        self.frames.append([])
        # A script may end by closing, or find the client gone: both are fine.
        with contextlib.suppress(ConnectionClosed):
            await self.behave(ws, len(self.paths))

    async def receive(self, ws: ServerConnection) -> dict[str, Any]:
        """The next frame from the client, recorded under its connection."""
        frame: dict[str, Any] = json.loads(await ws.recv())
        self.frames[-1].append(frame)
        return frame

    async def start(self) -> ScriptedServer:
        """Listen on a free loopback port."""
        self.server = await serve(self._handle, "127.0.0.1", 0, process_request=self._route)
        return self

    async def wait_connections(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` connections were opened."""
        async with asyncio.timeout(timeout):
            while len(self.paths) < count:
                await asyncio.sleep(0.02)


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Behaviour], Awaitable[ScriptedServer]]]:
    """Start scripted servers: ``await scripted(behave)``; closed at the end."""
    servers: list[ScriptedServer] = []

    async def start(behave: Behaviour) -> ScriptedServer:
        server = await ScriptedServer(behave).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        assert server.server is not None
        server.server.close()
        await server.server.wait_closed()


@pytest.fixture
async def devtools(chromium: Chromium) -> AsyncIterator[DevTools]:
    """A DevTools connection of this test's own."""
    connection = await DevTools.connect(chromium)
    yield connection
    await connection.close()


async def sdk_page(devtools: DevTools, server: ScriptedServer) -> Page:
    """A page on ``server``'s origin with the SDK loaded as ``window.rc``."""
    page = await devtools.new_page()
    await page.goto(server.origin + "/")
    await page.evaluate("import('/roomcast.js').then(m => { window.rc = m; })")
    return page


async def welcome_then(ws: ServerConnection, replies: Callable[[dict[str, Any]], Any]) -> None:
    """Say welcome, then answer every request with ``replies(request)`` (None: no answer)."""
    await ws.send(json.dumps(WELCOME))
    async for raw in ws:
        reply = replies(json.loads(raw))
        if reply is not None:
            await ws.send(json.dumps(reply))


def ok(request: dict[str, Any]) -> dict[str, Any]:
    """The ``ok`` reply to ``request``."""
    return {"type": "ok", "ref": request["ref"]}


async def test_replies_settle_the_request_with_their_ref_in_any_order(
    scripted: Callable[[Behaviour], Awaitable[ScriptedServer]], devtools: DevTools
) -> None:
    async def answer_backwards(ws: ServerConnection, n: int) -> None:
        await ws.send(json.dumps(WELCOME))
        first, second = await server.receive(ws), await server.receive(ws)
        await ws.send(json.dumps({"type": "pong", "ref": second["ref"], "tag": "second"}))
        await ws.send(json.dumps({"type": "pong", "ref": first["ref"], "tag": "first"}))
        await ws.wait_closed()

    server = await scripted(answer_backwards)
    page = await sdk_page(devtools, server)

    tags = await page.evaluate(
        f"(async () => {{ const c = rc.connect({json.dumps(server.ws)});"
        " const replies = await Promise.all([c.ping(), c.ping()]); c.close();"
        " return replies.map(r => r.tag); })()"
    )

    assert tags == ["first", "second"]


async def test_a_server_error_rejects_with_its_code(
    scripted: Callable[[Behaviour], Awaitable[ScriptedServer]],
    devtools: DevTools,
    broker: BrokerFactory,
) -> None:
    node = broker()
    server = await scripted(lambda ws, n: ws.wait_closed())
    page = await sdk_page(devtools, server)

    error = await page.evaluate(
        f"(async () => {{ const c = rc.connect({json.dumps(node.url)});"
        " try { await c.join('no spaces allowed'); return null; }"
        " catch (e) { return {name: e.name, code: e.code, rooms: c.rooms}; }"
        " finally { c.close(); } })()"
    )

    assert error == {"name": "RoomcastError", "code": "bad_room", "rooms": []}


async def test_a_request_without_reply_rejects_with_timeout(
    scripted: Callable[[Behaviour], Awaitable[ScriptedServer]], devtools: DevTools
) -> None:
    server = await scripted(lambda ws, n: welcome_then(ws, lambda request: None))
    page = await sdk_page(devtools, server)

    code = await page.evaluate(
        f"(async () => {{ const c = rc.connect({json.dumps(server.ws)});"
        " try { await c.ping({timeout: 200}); return 'resolved'; }"
        " catch (e) { return e.code; } finally { c.close(); } })()"
    )

    assert code == "timeout"


async def test_the_token_goes_in_the_token_query_parameter(
    scripted: Callable[[Behaviour], Awaitable[ScriptedServer]], devtools: DevTools
) -> None:
    server = await scripted(lambda ws, n: welcome_then(ws, ok))
    page = await sdk_page(devtools, server)

    await page.evaluate(
        f"(async () => {{ const c = rc.connect({json.dumps(server.ws)}, {{token: 'a b&c'}});"
        " await c.ping(); c.close(); })()"
    )

    assert server.paths == ["/ws?token=a+b%26c"]


async def test_going_away_reconnects_at_once_and_joins_again_before_queued_says(
    scripted: Callable[[Behaviour], Awaitable[ScriptedServer]], devtools: DevTools
) -> None:
    async def go_away_after_join(ws: ServerConnection, n: int) -> None:
        await ws.send(json.dumps(WELCOME))
        if n == 1:
            await ws.send(json.dumps(ok(await server.receive(ws))))
            # The client queues a say while the connection is down.
            await ws.close(1001, "draining")
            return
        while True:
            await ws.send(json.dumps(ok(await server.receive(ws))))

    server = await scripted(go_away_after_join)
    page = await sdk_page(devtools, server)

    result = await page.evaluate(
        f"(async () => {{ const c = rc.connect({json.dumps(server.ws)}, {{backoffInitial: 60000}});"
        " await c.join('lobby');"
        " const lost = new Promise(r => c.addEventListener('disconnected', e => r(e.detail)));"
        " const back = new Promise(r => c.addEventListener('reconnected', e => r(e.detail)));"
        " const detail = await lost; await c.say('lobby', 'queued');"
        " const again = await back; c.close();"
        " return {code: detail.code, delay: detail.delay, rooms: again.rooms}; })()"
    )

    assert result == {"code": 1001, "delay": 0, "rooms": ["lobby"]}
    assert [(f["type"], f["room"]) for f in server.frames[1]] == [
        ("join", "lobby"),
        ("say", "lobby"),
    ]


@pytest.mark.parametrize("code", [1003, 1008])
async def test_no_reconnect_after_a_close_that_reconnecting_cannot_fix(
    code: int, scripted: Callable[[Behaviour], Awaitable[ScriptedServer]], devtools: DevTools
) -> None:
    async def refuse(ws: ServerConnection, n: int) -> None:
        await ws.send(json.dumps(WELCOME))
        await server.receive(ws)
        await ws.close(code, "refused")

    server = await scripted(refuse)
    page = await sdk_page(devtools, server)

    result = await page.evaluate(
        f"(async () => {{ const c = rc.connect({json.dumps(server.ws)}, {{backoffInitial: 1}});"
        " const lost = new Promise(r => c.addEventListener('disconnected', e => r(e.detail)));"
        " const pending = c.ping().then(() => 'resolved', e => e.code);"
        " const detail = await lost; const later = await c.ping().catch(e => e.code);"
        " return {reconnect: detail.reconnect, state: c.state, pending: await pending, later}; })()"
    )
    # With a 1 ms backoff, a reconnect would have happened by now.
    await asyncio.sleep(0.3)

    assert result == {"reconnect": False, "state": "closed", "pending": "closed", "later": "closed"}
    assert len(server.paths) == 1


async def test_backoff_is_capped_exponential_with_full_jitter(
    scripted: Callable[[Behaviour], Awaitable[ScriptedServer]], devtools: DevTools
) -> None:
    server = await scripted(lambda ws, n: ws.wait_closed())
    page = await sdk_page(devtools, server)
    nothing_listens = f"ws://127.0.0.1:{free_port()}/ws"

    delays = await page.evaluate(
        f"(async () => {{ const c = rc.connect({json.dumps(nothing_listens)},"
        " {backoffInitial: 40, backoffMax: 150, random: () => 0.5});"
        " const delays = [];"
        " await new Promise(done => c.addEventListener('disconnected', e => {"
        "   delays.push(e.detail.delay); if (delays.length === 5) done(); }));"
        " c.close(); return delays; })()"
    )

    # uniform in [0, min(max, initial * 2^attempt)), here its midpoint
    assert delays == [20, 40, 75, 75, 75]


async def test_a_say_on_the_wire_when_the_connection_drops_rejects_disconnected(
    scripted: Callable[[Behaviour], Awaitable[ScriptedServer]], devtools: DevTools
) -> None:
    async def drop_on_say(ws: ServerConnection, n: int) -> None:
        await ws.send(json.dumps(WELCOME))
        while (frame := await server.receive(ws))["type"] != "say":
            await ws.send(json.dumps(ok(frame)))
        await ws.close(1011, "crash")

    server = await scripted(drop_on_say)
    page = await sdk_page(devtools, server)

    code = await page.evaluate(
        f"(async () => {{ const c = rc.connect({json.dumps(server.ws)});"
        " await c.join('r'); try { await c.say('r', 'lost?'); return 'resolved'; }"
        " catch (e) { return e.code; } finally { c.close(); } })()"
    )

    assert code == "disconnected"


async def test_a_missing_pong_abandons_the_connection_and_reconnects(
    scripted: Callable[[Behaviour], Awaitable[ScriptedServer]], devtools: DevTools
) -> None:
    async def deaf_first(ws: ServerConnection, n: int) -> None:
        await welcome_then(ws, lambda request: None if n == 1 else ok(request))

    server = await scripted(deaf_first)
    page = await sdk_page(devtools, server)

    result = await page.evaluate(
        f"(async () => {{ const c = rc.connect({json.dumps(server.ws)},"
        " {heartbeatInterval: 150, backoffInitial: 10});"
        " const lost = new Promise(r => c.addEventListener('disconnected', e => r(e.detail)));"
        " const detail = await lost; await c.ping(); c.close();"
        " return {code: detail.code, reconnect: detail.reconnect}; })()"
    )

    assert result == {"code": 4000, "reconnect": True}
    assert len(server.paths) == 2


async def test_evaluate_reports_javascript_errors(
    scripted: Callable[[Behaviour], Awaitable[ScriptedServer]], devtools: DevTools
) -> None:
    # The harness itself: a failing expression must fail the test that runs it.
    server = await scripted(lambda ws, n: ws.wait_closed())
    page = await sdk_page(devtools, server)

    with pytest.raises(JavaScriptError, match="boom"):
        await page.evaluate("Promise.reject(new Error('boom'))")
