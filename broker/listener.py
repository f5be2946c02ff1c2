"""The listening socket of a node and the set of its live connections:
accepting, keepalive, and closing them all (at once or spread over a drain).

Keepalive: one sweep per node, every half ping interval, pings each
connection that sent nothing for ``ping_interval`` and drops one whose ping
went unanswered for ``ping_timeout``. Any data from a client counts as a
sign of life, so busy connections are never pinged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from broker.wire import Wire, WireApp, WireSettings

__all__ = ["Listener"]

log = logging.getLogger("broker.listener")


class Listener:
    """Accepts connections for ``app`` and owns their lifecycle.

    Args:
        app: what every connection reports to.
        settings: per-connection limits and timeouts.
        ping_interval: seconds of silence before a ping (0: no keepalive).
        ping_timeout: seconds a ping may stay unanswered.
    """

    def __init__(
        self, app: WireApp, settings: WireSettings, ping_interval: float, ping_timeout: float
    ) -> None:
        self.app = app
        self.settings = settings
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.wires: set[Wire] = set()
        self._empty = asyncio.Event()
        self._empty.set()
        self._server: asyncio.Server | None = None
        self._keepalive: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        """Bind and start accepting."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Wire(self.app, self.settings, self),
            host,
            port,
            reuse_port=reuse_port or None,
            backlog=4096,
        )
        if self.ping_interval > 0:
            self._keepalive = loop.create_task(self._sweep(), name="keepalive")

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (their port, for instance)."""
        return tuple(self._server.sockets) if self._server is not None else ()

    def add(self, wire: Wire) -> None:
        """Keep track of a new connection."""
        self.wires.add(wire)
        self._empty.clear()

    def discard(self, wire: Wire) -> None:
        """Forget a lost connection."""
        self.wires.discard(wire)
        if not self.wires:
            self._empty.set()

    def stop_accepting(self) -> None:
        """Close the listening sockets; live connections go on."""
        if self._server is not None:
            self._server.close()

    def open_wires(self) -> list[Wire]:
        """The connections whose WebSocket is open."""
        return [wire for wire in self.wires if wire.is_open()]

    async def drain(self, seconds: float, code: int, reason: str) -> None:
        """Close every open WebSocket with ``code``, spread evenly over ``seconds``,
        and wait until every connection is gone (aborting stragglers)."""
        self.stop_accepting()
        wires = self.open_wires()
        pause = seconds / len(wires) if wires and seconds > 0 else 0.0
        for index, wire in enumerate(wires):
            if index and pause:
                await asyncio.sleep(pause)
            if wire not in self.wires:
                continue  # gone while we waited
            if wire.session is not None:
                wire.session.close(code, reason)  # writes its queued frames first
            else:
                wire.close(code, reason)
        await self.wait_empty(self.settings.close_timeout + 1.0)

    async def wait_empty(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for every connection to end, then abort the rest."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._empty.wait(), grace)
        for wire in tuple(self.wires):
            wire.abort()
        # abort() reports connection_lost on a later loop turn.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._empty.wait(), 1.0)

    async def close(self) -> None:
        """Stop keepalive and accepting; wait for the server to be closed."""
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        period = max(0.5, self.ping_interval / 2)
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for wire in tuple(self.wires):
                if not wire.is_open():
                    continue
                if wire.ping_sent:
                    if now - wire.ping_sent > self.ping_timeout:
                        log.info("keepalive timeout peer=%s: dropping", wire.peer)
                        wire.abort()
                elif now - wire.last_seen >= self.ping_interval:
                    wire.ping()
