"""A node: the hub, the backend and the subscriptions wired together, and the
operations a connection asks of them (publish, join, leave, history,
presence).

Delivery rule (PROTOCOL.md, "Semantics": every other member receives a
message exactly once; docs/HISTORY-PRESENCE.md, "No lost messages inside the
cluster"): a payload published by this node goes to every node subscribed to
the room through the backend, this one included, and each node hands its
members what comes back, in the order the store gave the room's offsets
(:mod:`broker.sequencer`). A publish the backend refused reached nobody. A
node that missed messages (its subscription was interrupted, or it sees a
gap) reads them from history and hands them on, in order, before anything
later.

Recovery (docs/HISTORY-PRESENCE.md, "Recovery"): a join with ``since`` reads
the missed messages, hands them to the joiner, and makes it a member at the
room's position on this node, all in one step without an await in between,
so replay and live traffic meet without a gap or a duplicate. Until its
``ok`` is sent, what the room receives waits for the joiner in a holding
list, so the ``ok`` comes before any live message.

Join and leave each read top-down in one method, and both resolve the same
way: once the backend settled the membership announcement (``joined`` or
``left``), so the ``ok`` a client gets is ordered after what the other
members are told. Announcements the backend refused are kept and sent again
(:mod:`broker.announcements`).

Read after acknowledgement (docs/HISTORY-PRESENCE.md, "Presence"): both
record the change in the room's presence (``Backend.track``) before they
publish the announcement, and ``Backend.track`` is ordered before every
later publish of the node. A join's ``ok`` waits for its ``joined`` to be
settled, so it is sent only once presence lists the session; a leave (or a
disconnect, which leaves every room) is removed from presence before its
``left`` is announced. While the store is away, the announcement is refused
at once, the change is recorded when the store is back, and ``presence``
answers ``unavailable`` meanwhile.

Invariants:
    * A session is in ``hub`` for a room exactly while this node holds the
      room's subscription on its behalf, and the backend tracks that
      membership (for presence and crash recovery).
    * With history, ``_sequences`` has a room exactly while the room is open
      on this node; members have been handed every offset up to its
      ``offset``, in order.
    * A join whose client went away while the node subscribed leaves no trace:
      no hub entry, no subscription held, no announcement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from broker.announcements import Announcements
from broker.backends.base import (
    Backend,
    BackendUnavailable,
    Delivery,
    HistoryRead,
    Membership,
    Position,
    PresenceHooks,
    PresenceRead,
)
from broker.counters import Counters
from broker.hub import Hub
from broker.outbox import FlushScheduler, Outbox
from broker.sequencer import RoomSequence
from broker.subscriptions import RoomSubscriptions
from protocol import MAX_PRESENCE_MEMBERS
from protocol import Position as SincePosition

__all__ = ["HOUSEKEEPING_INTERVAL", "JoinAnswer", "Node", "new_node_id", "new_session_id"]

log = logging.getLogger("broker.node")

HOUSEKEEPING_INTERVAL = 0.5
MAX_RECOVERY_READS = 5
"""History reads a recovering join makes before it gives up (recovered: false):
each read must reach past what the node has handed on meanwhile."""
MAX_READS_IN_FLIGHT = 32
"""History reads a node has in flight at once: a node reopening thousands of
rooms, or thousands of clients recovering at once, must not open as many
connections to the store."""
CATCH_UP_TIMEOUT = 2.0
"""Seconds a recovering join waits for this node to reach a position the
client already has (it came from a node that was ahead)."""

JoinAnswer = Callable[[Position | None, bool | None], None]
"""Sends a join's ``ok``: the room's position (``None`` without history) and
whether it was recovered (``None`` without ``since``)."""


def new_node_id() -> str:
    """A random node id such as ``n-1a2b3c4d``."""
    return "n-" + secrets.token_hex(4)


def new_session_id() -> str:
    """A random session id such as ``s-0123456789ab``."""
    return "s-" + secrets.token_hex(6)


class Node:
    """One broker process's view of the cluster.

    Args:
        node_id: this node's id.
        backend: how payloads reach the nodes, and the rooms' history.

    Attributes:
        counters: what this node counts (read by :mod:`broker.metrics`).
        draining: set once the node stops taking new clients.
    """

    def __init__(self, node_id: str, backend: Backend) -> None:
        self.id = node_id
        self.backend = backend
        self.hub = Hub()
        self.counters = Counters()
        self.draining = False
        self._history = backend.history_size > 0
        self._sequences: dict[str, RoomSequence] = {}
        self._advanced: dict[str, asyncio.Event] = {}
        self._fills: set[asyncio.Task[None]] = set()
        self._read_slots = asyncio.Semaphore(MAX_READS_IN_FLIGHT)
        # Presence reads are never shared (one begun before a join's ok would
        # miss the joiner), but bounded like history reads.
        self._presence_slots = asyncio.Semaphore(MAX_READS_IN_FLIGHT)
        self._reads: dict[tuple[str, int, int | None, int | None], asyncio.Future[HistoryRead]] = {}
        self._subscriptions = RoomSubscriptions(self._open_room, self._close_room)
        self._announcements = Announcements(self._announce)
        self._scheduler: FlushScheduler | None = None
        self._housekeeping: asyncio.Task[None] | None = None

    @property
    def scheduler(self) -> FlushScheduler:
        """The flush scheduler of this node's loop (after :meth:`start`)."""
        assert self._scheduler is not None, "Node.start() was not awaited"
        return self._scheduler

    async def start(self) -> None:
        """Connect the backend and start housekeeping.

        Raises:
            BackendUnavailable: the backend cannot be reached.
        """
        loop = asyncio.get_running_loop()
        self._scheduler = FlushScheduler(loop)
        announcements = self._announcements
        hooks = PresenceHooks(announcements.lost, announcements.revived, self._resubscribed)
        await self.backend.start(self._deliver, hooks)
        self._housekeeping = loop.create_task(self._housekeep(), name="node-housekeeping")

    async def close(self) -> None:
        """Stop housekeeping and history reads, and disconnect the backend."""
        tasks = [task for task in (self._housekeeping, *self._fills) if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.backend.close()

    def healthy(self) -> bool:
        """Ready for traffic: the backend is reachable and the node is not draining."""
        return not self.draining and self.backend.healthy()

    # --- operations ----------------------------------------------------------

    def publish(self, room: str, exclude: str, payload: bytes) -> asyncio.Future[Position | None]:
        """Send the ``message`` ``payload`` to every member of ``room`` in the
        cluster but ``exclude``.

        Returns:
            The backend's acceptance, with the position the message got
            (``None`` without history).
        """
        accepted = self.backend.publish(room, exclude, payload, time.time())
        accepted.add_done_callback(self._count_failure)
        return accepted

    async def join(
        self,
        room: str,
        session: str,
        outbox: Outbox,
        user: str | None = None,
        since: SincePosition | None = None,
        answer: JoinAnswer | None = None,
    ) -> bool:
        """Make ``session`` (of ``user``, if authenticated) a member of ``room``,
        after replaying what it missed since ``since``, and tell the others.

        ``answer`` sends the ``ok`` once the ``joined`` announcement was
        settled (ordered before anything the joiner does next), before any
        live message of the room reaches the joiner.

        Returns:
            ``True`` if the session is a member now, ``False`` if its client
            went away meanwhile (then nothing happened and nothing is sent).

        Raises:
            BackendUnavailable: the node could not open the room, or read the
                history a recovery needs (nothing happened).
        """
        await self._subscriptions.acquire(room)
        sequence = self._sequences.get(room)
        replay: list[bytes] = []
        recovered: bool | None = None
        try:
            if sequence is not None and since is not None:
                replay, recovered = await self._recover(sequence, since)
        except BaseException:
            self._subscriptions.release(room)
            raise
        if outbox.closed:
            # The client went away while the node subscribed: nobody joined.
            self._subscriptions.release(room)
            return False
        holding = _Holding()
        if not self.hub.add(room, session, holding):
            self._subscriptions.release(room)  # a member already: hold the room once
            if answer is not None:
                answer(self.position(room), None)
            return True
        for frame in replay:
            outbox.send_payload(frame)
        position = None if sequence is None else Position(sequence.offset, sequence.epoch or "")
        membership = Membership(room, session, user)
        # Presence first: the track is ordered before the joined's publish,
        # and the ok waits for that publish (read after acknowledgement).
        self.backend.track(membership, member=True)
        await _settled(self._announcements.joined(membership))
        if answer is not None:
            answer(position, recovered)
        if self.hub.swap(room, session, holding, outbox):
            holding.forward(outbox)
        return True

    def leave(self, room: str, session: str, user: str | None = None) -> asyncio.Future[None]:
        """Remove ``session`` (of ``user``, if authenticated) from ``room`` at
        once and tell the other members.

        Returns:
            A future that resolves (never fails) once the ``left``
            announcement was settled by the backend; at once if there was
            nothing to announce (not a member, or a ``joined`` that was never
            sent). Closing connections need not wait for it.
        """
        if not self.hub.remove(room, session):
            return _settled(None)
        membership = Membership(room, session, user)
        # Out of presence before its left is announced (read after acknowledgement).
        self.backend.track(membership, member=False)
        announced = self._announcements.left(membership)
        self._subscriptions.release(room)
        return _settled(announced)

    def position(self, room: str) -> Position | None:
        """Where ``room`` stands on this node (``None``: no history, or not open)."""
        sequence = self._sequences.get(room)
        if sequence is None or sequence.epoch is None:
            return None
        return Position(sequence.offset, sequence.epoch)

    async def history(
        self, room: str, limit: int | None = None, before: int | None = None
    ) -> HistoryRead | None:
        """The room's kept messages (``None`` when rooms keep no history).

        Raises:
            BackendUnavailable: the store could not be read.
        """
        if not self._history:
            return None
        return await self._read(room, before=before, limit=limit)

    async def presence(self, room: str) -> PresenceRead:
        """Who is in ``room`` on every node, at most
        :data:`~protocol.MAX_PRESENCE_MEMBERS` members listed.

        Raises:
            BackendUnavailable: the store could not be read.
        """
        async with self._presence_slots:
            return await self.backend.presence(room, MAX_PRESENCE_MEMBERS)

    def flush(self) -> None:
        """Write every queued frame now (before closing connections)."""
        self.scheduler.flush_now()

    def stats(self) -> dict[str, Any]:
        """Counters for tests and debugging."""
        counters = self.counters
        return {
            "node": self.id,
            "sessions": counters.sessions,
            "draining": self.draining,
            "says": counters.says,
            "publish_failures": counters.publish_failures,
            "slow_consumers": counters.slow_consumers,
            "unannounced": len(self._announcements),
            "lost": sum(sequence.lost for sequence in self._sequences.values()),
            "errors": dict(counters.errors),
            "hub": self.hub.stats(),
            "backend": self.backend.stats(),
        }

    # --- rooms ---------------------------------------------------------------

    async def _open_room(self, room: str) -> None:
        # Subscribe and learn where the room stands at once (one round trip
        # on a join's path, not two). Whatever arrives before the position is
        # known is held by the sequence and sorted out by start(). A message
        # published after the read but before the subscription took effect
        # would never arrive: one read after the subscription (off the join's
        # path) hands it on, as after any interruption.
        sequence = None
        if self._history:
            sequence = self._sequences[room] = RoomSequence(room)
        try:
            if sequence is None:
                await self.backend.subscribe(room)
                return
            reading = asyncio.ensure_future(self._read(room, limit=0))
            try:
                await self.backend.subscribe(room)
            except BaseException:
                reading.cancel()
                reading.add_done_callback(_retrieved)  # its failure is this one's
                raise
            read = await reading
            if self._sequences.get(room) is sequence:
                self._hand(sequence.start(read))
                self._fill_later(sequence, force=True)
        except BaseException:
            if sequence is not None and self._sequences.get(room) is sequence:
                del self._sequences[room]
            raise

    def _close_room(self, room: str) -> None:
        self._sequences.pop(room, None)
        self.backend.unsubscribe(room)

    async def _recover(
        self, sequence: RoomSequence, since: SincePosition
    ) -> tuple[list[bytes], bool]:
        # docs/HISTORY-PRESENCE.md, "Recovery". Returns without an await
        # after its last check, so the caller makes the joiner a member at
        # exactly the position the replay ends at.
        for _ in range(MAX_RECOVERY_READS):
            if since.epoch == sequence.epoch and since.offset == sequence.offset:
                return [], True
            read = await self._read(sequence.room, after=since.offset)
            if read.epoch != since.epoch or since.offset > read.offset:
                # A shared read may have begun before the client's position
                # existed: only a read of its own, begun now, may say no.
                read = await self._read_one(sequence.room, since.offset, None, None)
            if read.epoch != since.epoch or since.offset > read.offset:
                # Another epoch, or history went backwards: nothing to replay.
                return [], False
            if read.epoch != sequence.epoch or since.offset > sequence.offset:
                # This node is behind the store (or the client): wait for it.
                await self._caught_up(sequence, since.offset)
                continue
            current = sequence.offset
            if read.offset < current:
                continue  # the node handed on more meanwhile: read again
            missed = [(offset, frame) for offset, frame in read.messages if offset <= current]
            if not missed or missed[0][0] != since.offset + 1:
                return [], False  # history no longer holds what was missed
            return [frame for _, frame in missed], True
        return [], False

    async def _read(
        self, room: str, after: int = 0, before: int | None = None, limit: int | None = None
    ) -> HistoryRead:
        # One read serves every caller that asks the same while it is in
        # flight (2,000 clients recovering from one position make one read),
        # and at most MAX_READS_IN_FLIGHT reads run at once. A caller that
        # needs a read begun after some event (recovery) checks the result
        # against the room's position and reads again if it is behind.
        key = (room, after, before, limit)
        shared = self._reads.get(key)
        if shared is None:
            shared = asyncio.ensure_future(self._read_one(room, after, before, limit))
            self._reads[key] = shared
            shared.add_done_callback(partial(self._read_done, key))
        # Shielded: one caller giving up must not cancel the others' read.
        return await asyncio.shield(shared)

    async def _read_one(
        self, room: str, after: int, before: int | None, limit: int | None
    ) -> HistoryRead:
        async with self._read_slots:
            return await self.backend.read_history(room, after, before, limit)

    def _read_done(
        self, key: tuple[str, int, int | None, int | None], read: asyncio.Future[HistoryRead]
    ) -> None:
        if self._reads.get(key) is read:
            del self._reads[key]
        if not read.cancelled():
            read.exception()  # retrieved: a failure no caller awaited is not logged as lost

    async def _caught_up(self, sequence: RoomSequence, offset: int) -> None:
        room = sequence.room
        deadline = asyncio.get_running_loop().time() + CATCH_UP_TIMEOUT
        while self._sequences.get(room) is sequence and sequence.offset < offset:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            if sequence.gap:
                self._fill_later(sequence)
            event = self._advanced.setdefault(room, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    # --- announcements -------------------------------------------------------

    def _announce(self, room: str, exclude: str, payload: bytes) -> asyncio.Future[Any]:
        # joined/left are not part of a room's history (they are not replayed).
        accepted = self.backend.publish(room, exclude, payload, time.time(), history=False)
        accepted.add_done_callback(self._count_failure)
        return accepted

    # --- housekeeping --------------------------------------------------------

    async def _housekeep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
            self.counters.loop_lag = max(0.0, loop.time() - started - HOUSEKEEPING_INTERVAL)
            if not self.backend.healthy():
                continue
            if self._announcements:
                self._announcements.retry()
            for sequence in self._sequences.values():
                if sequence.gap:  # a fill that failed (Redis away) is tried again
                    self._fill_later(sequence)

    # --- delivery ------------------------------------------------------------

    def _count_failure(self, done: asyncio.Future[Any]) -> None:
        if not done.cancelled() and done.exception() is not None:
            self.counters.publish_failures += 1

    def _deliver(self, batch: Sequence[Delivery]) -> None:
        fanout, observe, now = self.hub.fanout, self.counters.latency.observe, time.time()
        sequences = self._sequences
        for delivery in batch:
            room = delivery.room
            if delivery.offset:
                sequence = sequences.get(room)
                if sequence is None:
                    continue  # the room was closed on this node meanwhile
                if not sequence.take(delivery):
                    if sequence.gap:
                        self._fill_later(sequence)
                    continue
                if fanout(room, delivery.exclude, delivery.payload):
                    observe(now - delivery.published_at)
                if sequence.gap:
                    self._hand(sequence.ready())
                if self._advanced:
                    self._wake(room)
            elif fanout(room, delivery.exclude, delivery.payload):
                observe(now - delivery.published_at)

    def _hand(self, deliveries: Sequence[Delivery]) -> None:
        # Messages released by a fill or after a gap, in order.
        fanout = self.hub.fanout
        for delivery in deliveries:
            fanout(delivery.room, delivery.exclude, delivery.payload)
        if deliveries and self._advanced:
            self._wake(deliveries[0].room)

    def _wake(self, room: str) -> None:
        event = self._advanced.pop(room, None)
        if event is not None:
            event.set()

    def _resubscribed(self) -> None:
        # What was published while the subscription was down never came:
        # read it back for every open room (docs/HISTORY-PRESENCE.md, "No
        # lost messages inside the cluster").
        for sequence in self._sequences.values():
            self._fill_later(sequence, force=True)

    def _fill_later(self, sequence: RoomSequence, *, force: bool = False) -> None:
        if sequence.filling or not sequence.started or not (force or sequence.gap):
            return
        sequence.filling = True
        task = asyncio.get_running_loop().create_task(self._fill(sequence))
        self._fills.add(task)
        task.add_done_callback(self._fills.discard)

    async def _fill(self, sequence: RoomSequence) -> None:
        room = sequence.room
        try:
            # A read of its own, begun now: a shared one may have begun before
            # this node handed on what it has, and would look "behind".
            handed = sequence.offset
            read = await self._read_one(room, handed, None, None)
            if read.epoch != sequence.epoch and sequence.offset:
                read = await self._read_one(room, 0, None, None)  # a new epoch: all of it
            if self._sequences.get(room) is not sequence:
                return
            if sequence.behind(read, handed):
                # The store lost writes but kept the epoch: offsets would be
                # reused. Start a new epoch, so no member takes a reused
                # offset for a new message (members see the epoch change).
                log.warning("room %s: offsets went backwards in epoch %s", room, read.epoch)
                await self.backend.rotate_epoch(room, read.epoch)
                read = await self._read(room)
                if self._sequences.get(room) is not sequence:
                    return
            lost = sequence.lost
            self._hand(sequence.fill(read))
            if sequence.lost > lost:
                log.warning(
                    "room %s: %d messages were gone from history", room, sequence.lost - lost
                )
        except BackendUnavailable as exc:
            log.info("room %s: history read failed (%s); will retry", room, exc)
        finally:
            sequence.filling = False


class _Holding:
    """What a joiner is sent between becoming a member and its ``ok``:
    kept, then forwarded in order (an :class:`~broker.outbox.Outbox`)."""

    __slots__ = ("closed", "kept")

    def __init__(self) -> None:
        self.closed = False
        self.kept: list[tuple[bytes | None, bytes]] = []

    def send(self, frame: bytes, payload: bytes) -> None:
        self.kept.append((frame, payload))

    def send_payload(self, payload: bytes) -> None:
        self.kept.append((None, payload))

    def flush(self) -> None:
        """Nothing is written from here."""

    def close(self) -> None:
        self.closed = True

    def drained(self) -> None:
        """Nothing is written from here."""

    def forward(self, outbox: Outbox) -> None:
        """Send what was kept to ``outbox``, in order."""
        for frame, payload in self.kept:
            if frame is None:
                outbox.send_payload(payload)
            else:
                outbox.send(frame, payload)
        self.kept.clear()


def _retrieved(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _settled(announced: asyncio.Future[None] | None) -> asyncio.Future[None]:
    # The one way join and leave wait for their announcement: a future that
    # resolves when the backend settled it, whether it accepted or refused it
    # (a refused one is in the ledger, to be sent again).
    told: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    if announced is None:
        told.set_result(None)
    else:
        announced.add_done_callback(partial(_resolve, told))
    return told


def _resolve(told: asyncio.Future[None], _: asyncio.Future[None]) -> None:
    if not told.done():  # a waiter may have been cancelled meanwhile
        told.set_result(None)
