"""Drive headless Chromium through the DevTools protocol, over ``websockets``.

Just what the deploy tests need: open a page, evaluate JavaScript (awaiting
promises), type into the focused element, press Enter, take a screenshot.
A :class:`Chromium` is one browser process (started and stopped by its PID);
a :class:`DevTools` is one protocol connection to it, made inside a test's
event loop; a :class:`Page` is one tab attached in flat session mode.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

__all__ = ["Chromium", "DevTools", "JavaScriptError", "Page"]

# The flags a root, offline, headless CI needs (no sandbox as root, no
# network calls of its own).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=900,760",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


class JavaScriptError(AssertionError):
    """An evaluated expression threw (or its promise rejected)."""


class Chromium:
    """A headless Chromium process with a fresh profile."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.profile = Path(tempfile.mkdtemp(prefix="roomcast-chromium-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.ws_url = ""

    def start(self, timeout: float = 20.0) -> Chromium:
        """Launch it and wait until it says where its DevTools endpoint is."""
        self.process = subprocess.Popen(
            [self.binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Chromium writes "port\n/devtools/browser/<id>" once it listens.
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (active.exists() and len(active.read_text().split()) == 2):
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port, path = active.read_text().split()
        self.ws_url = f"ws://127.0.0.1:{port}{path}"
        return self

    def stop(self) -> None:
        """Terminate it by PID and remove its profile."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)


class DevTools:
    """One DevTools protocol connection: commands matched to replies by id."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._waiters: list[tuple[str, str | None, asyncio.Future[dict[str, Any]]]] = []
        self.pages: dict[str, Page] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, browser: Chromium) -> DevTools:
        """Connect to ``browser``'s endpoint."""
        ws = await connect(browser.ws_url, max_size=64 * 1024 * 1024, ping_interval=None)
        return cls(ws)

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            if "id" in message:
                future = self._replies.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result(message)
                continue
            session = message.get("sessionId")
            page = self.pages.get(session) if session else None
            if page is not None:
                page.on_event(message["method"], message.get("params", {}))
            for waiter in list(self._waiters):
                method, wanted_session, future = waiter
                if method == message["method"] and wanted_session == session:
                    self._waiters.remove(waiter)
                    if not future.done():
                        future.set_result(message.get("params", {}))

    async def send(
        self, method: str, session: str | None = None, timeout: float = 15.0, **params: Any
    ) -> dict[str, Any]:
        """Send a command and return its result.

        Raises:
            RuntimeError: the browser answered with an error.
        """
        message_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[message_id] = future
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self.ws.send(json.dumps(message))
        reply = await asyncio.wait_for(future, timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def expect_event(self, method: str, session: str | None) -> asyncio.Future[dict[str, Any]]:
        """A future for the next ``method`` event; create it before causing the event."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append((method, session, future))
        return future

    async def new_page(self) -> Page:
        """Open a blank tab and attach to it."""
        target = await self.send("Target.createTarget", url="about:blank")
        attached = await self.send(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        page = Page(self, target["targetId"], attached["sessionId"])
        self.pages[page.session] = page
        for domain in ("Page", "Runtime", "Log"):
            await page.send(f"{domain}.enable")
        return page

    async def close(self) -> None:
        """Close every page and the connection."""
        for page in list(self.pages.values()):
            with contextlib.suppress(Exception):
                await page.close()
        await self.ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)


class Page:
    """One tab; ``errors`` collects uncaught exceptions and console errors."""

    def __init__(self, devtools: DevTools, target: str, session: str) -> None:
        self.devtools = devtools
        self.target = target
        self.session = session
        self.errors: list[str] = []
        self.log: list[str] = []

    def on_event(self, method: str, params: dict[str, Any]) -> None:
        """Record what the page reports about itself."""
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description") or details["text"])
        elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
            self.errors.append(" ".join(str(a.get("value", "")) for a in params["args"]))
        elif method == "Log.entryAdded":
            entry = params["entry"]
            self.log.append(f"{entry['level']}: {entry['text']}")

    async def send(self, method: str, timeout: float = 15.0, **params: Any) -> dict[str, Any]:
        """A command to this tab."""
        return await self.devtools.send(method, self.session, timeout, **params)

    async def goto(self, url: str, timeout: float = 15.0) -> None:
        """Navigate and wait for the load event."""
        loaded = self.devtools.expect_event("Page.loadEventFired", self.session)
        result = await self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise RuntimeError(f"navigation to {url} failed: {result['errorText']}")
        await asyncio.wait_for(loaded, timeout)

    async def evaluate(self, expression: str, timeout: float = 15.0) -> Any:
        """The JSON value of ``expression``, awaiting it if it is a promise.

        Raises:
            JavaScriptError: it threw or rejected; the message is JavaScript's.
        """
        result = await self.send(
            "Runtime.evaluate",
            timeout=timeout,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise JavaScriptError(
                details.get("exception", {}).get("description") or details.get("text")
            )
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        """Poll ``expression`` until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"still falsy after {timeout} s: {expression}")
            await asyncio.sleep(0.05)

    async def type_into(self, selector: str, text: str) -> None:
        """Focus ``selector``, clear it, and type ``text`` as a user would."""
        await self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            " el.focus(); el.select(); })()"
        )
        await self.send("Input.insertText", text=text)

    async def press_enter(self) -> None:
        """Press and release Enter in the focused element (submits its form)."""
        key: dict[str, Any] = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
        await self.send("Input.dispatchKeyEvent", type="keyDown", text="\r", **key)
        await self.send("Input.dispatchKeyEvent", type="keyUp", **key)

    async def screenshot(self, path: Path) -> Path:
        """Write a PNG of the viewport to ``path``."""
        shot = await self.send("Page.captureScreenshot", format="png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    async def close(self) -> None:
        """Close the tab."""
        self.devtools.pages.pop(self.session, None)
        await self.devtools.send("Target.closeTarget", targetId=self.target)
