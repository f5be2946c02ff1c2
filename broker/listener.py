"""The listening socket of a node and the set of its live connections:
accepting, keepalive, and closing them all (at once or spread over a drain).

Every accepted connection starts as an :class:`~broker.edge.Edge` (reading
the request head) and is handed over to an HTTP exchange or a
:class:`~broker.wire.Wire`; each stage adds itself to the listener's set and
leaves it, so a drain sees every live connection, whatever its stage.

Keepalive: one sweep per node pings each connection that sent nothing for
``ping_interval`` and drops one whose ping went unanswered for
``ping_timeout``. Any data from a client counts as a sign of life, so busy
connections are never pinged. The connections are kept in
:data:`KEEPALIVE_SLICES` slices and the sweep looks at one slice per tick,
so every connection is looked at once per half ping interval and the pings
of 100,000 idle connections are spread over that time, never sent in one
burst that would stall the loop. No connection has a timer of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Final

from broker.edge import Edge, EdgeApp
from broker.link import Link, WireSettings
from broker.wire import Wire

__all__ = ["KEEPALIVE_SLICES", "Listener"]

log = logging.getLogger("broker.listener")

KEEPALIVE_SLICES: Final = 16
"""Slices of the connections; the keepalive sweep looks at one per tick."""


def _slice_of(link: Link) -> int:
    # Object addresses are 16-byte aligned: the bits above spread evenly.
    return (id(link) >> 4) % KEEPALIVE_SLICES


class Listener:
    """Accepts connections for ``app`` and owns their lifecycle.

    Args:
        app: what every connection reports to.
        settings: per-connection limits and timeouts.
        ping_interval: seconds of silence before a ping (0: no keepalive).
        ping_timeout: seconds a ping may stay unanswered.
    """

    def __init__(
        self, app: EdgeApp, settings: WireSettings, ping_interval: float, ping_timeout: float
    ) -> None:
        self.app = app
        self.settings = settings
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._slices: tuple[set[Link], ...] = tuple(set() for _ in range(KEEPALIVE_SLICES))
        self._count = 0
        self._empty = asyncio.Event()
        self._empty.set()
        self._server: asyncio.Server | None = None
        self._keepalive: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        """Bind and start accepting."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Edge(self.app, self.settings, self),
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

    @property
    def links(self) -> frozenset[Link]:
        """Every live connection, whatever its stage (a copy)."""
        return frozenset().union(*self._slices)

    def holds(self, link: Link) -> bool:
        """Whether ``link`` is still live."""
        return link in self._slices[_slice_of(link)]

    def add(self, link: Link) -> None:
        """Keep track of a new connection (or of the next stage of one)."""
        links = self._slices[_slice_of(link)]
        if link not in links:
            links.add(link)
            self._count += 1
            self._empty.clear()

    def discard(self, link: Link) -> None:
        """Forget a lost connection (or the stage it left)."""
        links = self._slices[_slice_of(link)]
        if link in links:
            links.remove(link)
            self._count -= 1
            if not self._count:
                self._empty.set()

    def stop_accepting(self) -> None:
        """Close the listening sockets; live connections go on."""
        if self._server is not None:
            self._server.close()

    def open_wires(self) -> list[Wire]:
        """The connections whose WebSocket is open."""
        return [wire for links in self._slices for wire in _open_wires(links)]

    async def drain(self, seconds: float, code: int, reason: str) -> None:
        """Close every open WebSocket with ``code``, spread evenly over ``seconds``,
        and wait until every connection is gone (aborting stragglers)."""
        self.stop_accepting()
        wires = self.open_wires()
        pause = seconds / len(wires) if wires and seconds > 0 else 0.0
        for index, wire in enumerate(wires):
            if index and pause:
                await asyncio.sleep(pause)
            if not self.holds(wire):
                continue  # gone while we waited
            if wire.handler is not None:
                wire.handler.close(code, reason)  # writes its queued frames first
            else:
                wire.close(code, reason)
        await self.wait_empty(self.settings.close_timeout + 1.0)

    async def wait_empty(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for every connection to end, then abort the rest."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._empty.wait(), grace)
        for link in tuple(self.links):
            link.abort()
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

    def keepalive_round(self, now: float) -> None:
        """Ping every open connection quiet for ``ping_interval``; drop those
        whose ping went unanswered for ``ping_timeout``."""
        for index in range(KEEPALIVE_SLICES):
            self.keepalive_slice(index, now)

    def keepalive_slice(self, index: int, now: float) -> None:
        """:meth:`keepalive_round` for the connections of slice ``index``."""
        for wire in _open_wires(self._slices[index]):
            if wire.ping_sent:
                if now - wire.ping_sent > self.ping_timeout:
                    log.info("keepalive timeout peer=%s: dropping", wire.peer)
                    wire.abort()
            elif now - wire.last_seen >= self.ping_interval:
                wire.ping()

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        tick = max(0.5, self.ping_interval / 2) / KEEPALIVE_SLICES
        index = 0
        while True:
            await asyncio.sleep(tick)
            self.keepalive_slice(index, loop.time())
            index = (index + 1) % KEEPALIVE_SLICES


def _open_wires(links: set[Link]) -> list[Wire]:
    return [link for link in links if isinstance(link, Wire) and link.is_open()]
