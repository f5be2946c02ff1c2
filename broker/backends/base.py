"""The backend seam: how nodes of one cluster hand room traffic to each other.

A backend carries opaque payloads between nodes. It knows rooms, not
sessions: membership is each node's own business (:mod:`broker.hub`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

__all__ = ["Backend", "BackendUnavailable", "DeliverBatch", "Delivery"]


class Delivery(NamedTuple):
    """One payload that another node published to a room."""

    room: str
    exclude: str
    """Session that must not receive it (the sender, or the one who joined/left)."""
    payload: bytes
    """A complete server-to-client JSON message, encoded once by its origin."""
    published_at: float = 0.0
    """Wall-clock time (``time.time()``) when the origin accepted it, for latency metrics."""


DeliverBatch = Callable[[Sequence[Delivery]], None]
"""Called by a backend, never awaiting, with what arrived together."""


class Membership(NamedTuple):
    """One session's membership of one room, as recorded for crash recovery."""

    room: str
    session: str
    user: str | None


class PresenceHooks(NamedTuple):
    """How a backend that detects dead nodes talks back to its node."""

    lost: Callable[[Sequence[Membership]], None]
    """These memberships belonged to a node that died: announce their ``left``."""
    revived: Callable[[Sequence[Membership]], None]
    """The cluster took this node for dead and announced these ``left``:
    announce their ``joined`` again."""


class BackendUnavailable(Exception):
    """The backend could not take a publish or a subscription; nothing was sent."""


class OutcomeUnknown(Exception):
    """The backend failed after the publish was handed to it (a timeout, a
    reset connection): it may or may not reach the other nodes."""


class Backend(Protocol):
    """Contract every backend keeps.

    Delivery: a payload published by node A to room R is handed exactly once to
    every *other* node subscribed to R when the publish was accepted; never
    back to A (A delivers to its own members when its publish is accepted).

    Ordering: payloads published by one node, in the order :meth:`publish` was
    called, reach every other node in that order.

    Subscription: when :meth:`subscribe` returns, every publish accepted
    afterwards reaches this node.
    """

    async def start(self, deliver: DeliverBatch, presence: PresenceHooks | None = None) -> None:
        """Connect; from now on ``deliver`` receives other nodes' payloads, and
        ``presence`` hears of dead nodes (backends without other processes
        never call it)."""

    def track(self, membership: Membership, member: bool) -> None:
        """Record that ``membership`` began (``member``) or ended, so that
        another node can announce its ``left`` if this one dies."""

    async def close(self) -> None:
        """Disconnect and stop every background task."""

    async def subscribe(self, room: str) -> None:
        """Receive ``room`` from now on.

        Raises:
            BackendUnavailable: the subscription could not be made.
        """

    def unsubscribe(self, room: str) -> None:
        """Stop receiving ``room`` (ordered after earlier calls; never blocks)."""

    def publish(
        self, room: str, exclude: str, payload: bytes, published_at: float = 0.0
    ) -> asyncio.Future[None]:
        """Send ``payload`` to the other nodes subscribed to ``room``.

        Returns:
            A future that resolves when the backend accepted the publish, or
            fails with :class:`BackendUnavailable` (nothing was sent) or
            :class:`OutcomeUnknown`.
        """

    def healthy(self) -> bool:
        """Whether the backend is reachable right now."""

    def stats(self) -> dict[str, Any]:
        """Cheap counters for metrics and tests."""
