"""The backend seam: how nodes of one cluster hand room traffic to each other.

A backend carries opaque payloads between nodes. It knows rooms, not
sessions: membership is each node's own business (:mod:`broker.hub`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

__all__ = [
    "Backend",
    "BackendUnavailable",
    "DeliverBatch",
    "Delivery",
    "HistoryRead",
    "Membership",
    "OutcomeUnknown",
    "Position",
    "PresenceHooks",
    "PresenceRead",
]


class Delivery(NamedTuple):
    """One payload that another node published to a room."""

    room: str
    exclude: str
    """Session that must not receive it (the sender, or the one who joined/left)."""
    payload: bytes
    """A complete server-to-client JSON message, encoded once by its origin."""
    published_at: float = 0.0
    """Wall-clock time (``time.time()``) when the origin accepted it, for latency metrics."""
    offset: int = 0
    """The message's offset in its room (0: no position: an announcement, or
    a room without history); ``payload`` already carries it."""
    epoch: str = ""
    """The epoch of ``offset``."""


class Position(NamedTuple):
    """Where a room stands: the last ``offset`` given in ``epoch``."""

    offset: int
    epoch: str


class HistoryRead(NamedTuple):
    """What a history read found, in one atomic look at the store."""

    epoch: str
    """The room's current epoch."""
    offset: int
    """The room's current (last given) offset; 0 if none yet."""
    messages: Sequence[tuple[int, bytes]]
    """Kept messages asked for, oldest first: ``(offset, message frame)``."""


DeliverBatch = Callable[[Sequence[Delivery]], None]
"""Called by a backend, never awaiting, with what arrived together."""


@dataclass(frozen=True, slots=True)
class PresenceRead:
    """Who is in a room, cluster-wide, in one look at the store."""

    count: int
    """Sessions in the room on every node."""
    users: int
    """Distinct users among them (anonymous sessions count as none)."""
    members: Sequence[tuple[str, str | None]]
    """At most the ``limit`` asked for: ``(session, user or None)``."""
    truncated: bool
    """Whether ``members`` lists fewer than ``count``."""


class Membership(NamedTuple):
    """One session's membership of one room, as recorded for crash recovery."""

    room: str
    session: str
    user: str | None


def _nothing() -> None:
    """The default of a hook nobody needs."""


class PresenceHooks(NamedTuple):
    """How a backend talks back to its node about the cluster."""

    lost: Callable[[Sequence[Membership]], None]
    """These memberships belonged to a node that died: announce their ``left``."""
    revived: Callable[[Sequence[Membership]], None]
    """The cluster took this node for dead and announced these ``left``:
    announce their ``joined`` again."""
    resubscribed: Callable[[], None] = _nothing
    """The node's subscriptions were interrupted (a reconnect, a deaf
    subscriber rebuilt) and are whole again: what was published meanwhile
    never arrived, so the node reads it from history."""


class BackendUnavailable(Exception):
    """The backend could not take a publish or a subscription; nothing was sent."""


class OutcomeUnknown(Exception):
    """The backend failed after the publish was handed to it (a timeout, a
    reset connection): it may or may not reach the other nodes."""


class Backend(Protocol):
    """Contract every backend keeps.

    Delivery: a payload published to room R is handed exactly once to every
    node subscribed to R when the publish was accepted, the publishing node
    included (a node delivers to its own members what comes back, so that
    they get a room's messages in one order: the store's).

    Ordering: payloads published by one node, in the order :meth:`publish` was
    called, reach every node in that order (on a Redis Cluster: those of
    rooms on one shard; the rooms of different shards are independent).
    Messages with a position reach every node in offset order, unless a
    subscription was interrupted (then ``resubscribed`` is called once it is
    whole again).

    Positions (docs/HISTORY-PRESENCE.md, "Positions"): with history
    (``history_size`` > 0), a ``message`` published with ``history=True`` is
    given the room's next offset in the room's epoch, written into its frame
    (:func:`protocol.with_position`), kept in the room's history (the last
    ``history_size``, for ``history_ttl`` seconds after the room's last
    message; the position itself for ``history_meta_ttl``) and published, in
    one atomic step: a message is in history if and only if it was
    published. An epoch is created with the room's position (first message,
    first read, or after the position expired or was lost) and is random.

    Subscription: when :meth:`subscribe` returns, every publish accepted
    afterwards reaches this node.
    """

    async def start(self, deliver: DeliverBatch, presence: PresenceHooks | None = None) -> None:
        """Connect; from now on ``deliver`` receives other nodes' payloads, and
        ``presence`` hears of dead nodes (backends without other processes
        never call it)."""

    def track(self, membership: Membership, member: bool) -> None:
        """Record that ``membership`` began (``member``) or ended: in the
        room's presence (docs/HISTORY-PRESENCE.md, "Presence"), and so that
        another node can announce its ``left`` if this one dies.

        Ordered before every publish this node makes afterwards: a ``joined``
        (or ``left``) published after it is announced only once presence
        shows the change. While the store is away, the change is recorded
        when it is back. A record lives only while its node is alive (it
        expires without the node's heartbeat, and a surviving node removes a
        dead node's records within the node timeout)."""

    async def presence(self, room: str, limit: int) -> PresenceRead:
        """Who is in ``room`` on every node: counts in O(1), and at most
        ``limit`` members listed.

        Raises:
            BackendUnavailable: the store could not be read.
        """

    async def close(self) -> None:
        """Disconnect and stop every background task."""

    async def subscribe(self, room: str) -> None:
        """Receive ``room`` from now on.

        Raises:
            BackendUnavailable: the subscription could not be made.
        """

    def unsubscribe(self, room: str) -> None:
        """Stop receiving ``room`` (ordered after earlier calls; never blocks)."""

    @property
    def history_size(self) -> int:
        """Messages kept per room (0: no history and no positions)."""

    def publish(
        self,
        room: str,
        exclude: str,
        payload: bytes,
        published_at: float = 0.0,
        *,
        history: bool = True,
    ) -> asyncio.Future[Position | None]:
        """Send ``payload`` to the nodes subscribed to ``room``; with
        ``history`` (a ``message``; announcements go without), give it a
        position first.

        Returns:
            A future that resolves when the backend accepted the publish, to
            the position the message got (``None`` without one), or fails
            with :class:`BackendUnavailable` (nothing was sent) or
            :class:`OutcomeUnknown`.
        """

    async def read_history(
        self, room: str, after: int = 0, before: int | None = None, limit: int | None = None
    ) -> HistoryRead:
        """The room's position and its kept messages with ``after < offset <
        before``, the newest ``limit`` of them, oldest first, in one atomic
        look. A room without a position gets one (a new epoch, offset 0).

        Raises:
            BackendUnavailable: the store could not be read.
        """

    async def rotate_epoch(self, room: str, stale_epoch: str) -> None:
        """If the room is still in ``stale_epoch``, drop its history and
        position, so its next message starts a new epoch (a node found the
        store's offsets gone backwards within one epoch).

        Raises:
            BackendUnavailable: the store could not be reached.
        """

    def healthy(self) -> bool:
        """Whether the backend is reachable right now."""

    def stats(self) -> dict[str, Any]:
        """Cheap counters for metrics and tests."""
