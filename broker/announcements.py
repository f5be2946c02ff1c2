"""Membership announcements (``joined``/``left``) to the rest of the cluster,
and the ledger of those the backend refused, to send again once it is back
(so members on other nodes are not left believing in a ghost).

Invariants:
    * The ledger holds at most one change per (room, session): the last one
      the backend certainly did not send.
    * Only what certainly was not sent (:class:`BackendUnavailable`) is kept:
      an :class:`OutcomeUnknown` may have reached the others, and a second
      copy would be a duplicate.
    * A change and its opposite both unsent cancel out: nobody elsewhere
      heard of either, so neither is sent.
    * The ledger never holds more than ``limit`` changes; past it the oldest
      is dropped, with a warning.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from functools import partial

import msgspec

from broker.backends.base import BackendUnavailable, Membership
from protocol import Joined, Left, encode

__all__ = ["MAX_UNANNOUNCED", "Announcements", "PublishFn"]

log = logging.getLogger("broker.announcements")

MAX_UNANNOUNCED = 100_000

PublishFn = Callable[[str, str, bytes], "asyncio.Future[None]"]
"""``publish(room, exclude, payload)``: the node's publish, whose future
settles when the backend accepted or refused the payload."""

_Key = tuple[str, str]  # (room, session)


class Announcements:
    """Tells the cluster who joined and left, and remembers what it could not.

    Args:
        publish: sends a payload to a room's other members, cluster-wide.
        limit: most changes kept while the backend is unavailable.
    """

    __slots__ = ("_limit", "_publish", "_unsent")

    def __init__(self, publish: PublishFn, limit: int = MAX_UNANNOUNCED) -> None:
        self._publish = publish
        self._limit = limit
        # (room, session) -> (is_join, payload), in the order they were refused.
        self._unsent: dict[_Key, tuple[bool, bytes]] = {}

    def __len__(self) -> int:
        """How many changes wait to be sent again."""
        return len(self._unsent)

    def joined(self, membership: Membership) -> asyncio.Future[None] | None:
        """Announce that ``membership`` began.

        Returns:
            The backend's acceptance, or ``None`` if nothing was published
            (it cancelled an unsent ``left``).
        """
        room, session, user = membership
        return self._announce(
            room, session, True, encode(Joined(room=room, session=session, user=_user(user)))
        )

    def left(self, membership: Membership) -> asyncio.Future[None] | None:
        """Announce that ``membership`` ended.

        Returns:
            The backend's acceptance, or ``None`` if nothing was published
            (it cancelled an unsent ``joined``).
        """
        room, session, user = membership
        return self._announce(
            room, session, False, encode(Left(room=room, session=session, user=_user(user)))
        )

    def lost(self, memberships: Sequence[Membership]) -> None:
        """Members of a node that died: its sessions are gone, so their ``left``
        is announced on its behalf (once, by the node that reaped it)."""
        for membership in memberships:
            self.left(membership)

    def revived(self, memberships: Sequence[Membership]) -> None:
        """The cluster took this node for dead, but these members are still
        here: announce their ``joined`` again."""
        for membership in memberships:
            self.joined(membership)

    def retry(self) -> int:
        """Publish again every change the backend refused.

        Returns:
            How many were published.
        """
        pending, self._unsent = self._unsent, {}
        if pending:
            log.info("re-announcing %d membership changes after a backend outage", len(pending))
        for (room, session), (is_join, payload) in pending.items():
            self._send((room, session), is_join, payload)
        return len(pending)

    def _announce(
        self, room: str, session: str, is_join: bool, payload: bytes
    ) -> asyncio.Future[None] | None:
        key = (room, session)
        if self._unsent.pop(key, None) is not None:
            # Still waiting to tell the cluster about the opposite change:
            # both cancel out, and nobody elsewhere needs to hear of either.
            return None
        return self._send(key, is_join, payload)

    def _send(self, key: _Key, is_join: bool, payload: bytes) -> asyncio.Future[None]:
        accepted = self._publish(key[0], key[1], payload)
        accepted.add_done_callback(partial(self._settled, key, is_join, payload))
        return accepted

    def _settled(
        self, key: _Key, is_join: bool, payload: bytes, done: asyncio.Future[None]
    ) -> None:
        if done.cancelled() or not isinstance(done.exception(), BackendUnavailable):
            return
        unsent = self._unsent.get(key)
        if unsent is not None and unsent[0] is not is_join:
            # Both this change and its opposite were refused: neither was sent.
            del self._unsent[key]
            return
        if len(self._unsent) >= self._limit:
            oldest = next(iter(self._unsent))
            del self._unsent[oldest]
            log.warning("too many unannounced membership changes; dropped %s", oldest)
        self._unsent[key] = (is_join, payload)


def _user(user: str | None) -> str | msgspec.UnsetType:
    # An anonymous session's joined/left carry no `user` field at all.
    return msgspec.UNSET if user is None else user
