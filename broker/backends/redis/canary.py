"""The canary: proof that this node hears what it publishes ("no deaf nodes").

Every ``interval`` (the first at once) the node publishes a numbered canary
(SPUBLISH) on its own sharded channel ``{namespace:node:node}`` and expects
it back through its own subscription: the connection that carries the
node's rooms (sharded pub/sub too), so a canary back proves room traffic
can arrive.

Invariants:
    * :meth:`Canary.fresh` is true only once a canary published after the
      latest (re)subscription came back through it, and for ``timeout``
      after the latest one came back. So a node that may not SPUBLISH, or may
      not SSUBSCRIBE to its channels (an ACL without those rights), is never
      ready, and a new subscription is trusted only once it carried one.
    * Deafness is claimed only for a canary that Redis took and that did not
      come back within ``timeout``, while nothing at all arrived on the
      subscription for ``timeout``: a canary that Redis did not take (it is
      down or stalled) says nothing about the subscription, and one that is
      late behind other traffic says the node is busy (behind on reading),
      not deaf. Rebuilding a subscription drops what it has not read yet, so
      it is done only for a silent one. A busy node still stops being ready
      (its canary is not fresh), which sends new clients elsewhere.
    * The canary's outcome is the publisher connection's health: a node whose
      last say failed becomes healthy again without another say.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from broker.backends.redis.client import IO_ERRORS
from broker.backends.redis.errors import brief
from broker.backends.redis.publisher import Publisher

__all__ = ["Canary", "Listening"]

log = logging.getLogger("broker.redis")


class Listening(Protocol):
    """What the canary needs of the subscriber."""

    @property
    def up(self) -> bool:
        """Whether a subscription is open."""

    @property
    def last_received(self) -> float:
        """When a message last arrived on the subscription (monotonic seconds)."""

    async def rebuild(self) -> None:
        """Replace the subscription with a new one."""


class Canary:
    """Sends canaries through ``publisher`` and hears them back via :meth:`back`.

    Args:
        publisher: the publisher connection (its ``up`` is set here too).
        channel: this node's own channel.
        interval: seconds between canaries.
        timeout: seconds without a canary back before the node is not ready,
            and before a canary Redis took counts as lost (deaf).
    """

    def __init__(
        self, publisher: Publisher, channel: bytes, interval: float, timeout: float
    ) -> None:
        self._publisher = publisher
        self._channel = channel
        self._interval = interval
        self._timeout = timeout
        self._seq = 0
        self._first_valid = 1  # canaries numbered below were sent before the subscription
        # Canaries not back yet: when sent (for the lag), and when Redis took
        # them (for deafness: only a canary Redis took can be missing).
        self._sent: dict[int, float] = {}
        self._taken: dict[int, float] = {}
        self._last_back: float | None = None
        self._heard = asyncio.Event()
        self._last_error = ""
        self.misses = 0
        self.lag = 0.0

    def fresh(self) -> bool:
        """Whether a canary came back through the current subscription
        within the last ``timeout`` seconds."""
        last = self._last_back
        return last is not None and time.monotonic() - last <= self._timeout

    async def wait_heard(self) -> None:
        """Wait until a canary came back through the current subscription."""
        await self._heard.wait()

    def restart(self) -> None:
        """A new subscription: trust it only once it carried a canary.

        The next canary goes at the next tick, not at once: other nodes
        re-subscribe at their own (jittered) pace after an outage, and this
        node re-publishes the announcements that failed as soon as it is
        ready; Redis keeps nothing for a node not yet subscribed.
        """
        self._first_valid = self._seq + 1
        self._sent.clear()
        self._taken.clear()
        self._last_back = None
        self._heard.clear()

    def back(self, data: bytes) -> None:
        """A canary came back through the subscription."""
        try:
            seq = int(data)
        except ValueError:
            log.warning("malformed canary %r skipped", data[:40])
            return
        self._taken.pop(seq, None)
        sent = self._sent.pop(seq, None)
        if seq < self._first_valid or sent is None:
            return  # published before the current subscription: proves nothing
        self._last_back = now = time.monotonic()
        self.lag = now - sent
        self._heard.set()

    async def run(self, subscriber: Listening) -> None:
        """Send canaries and rebuild a deaf subscription, until cancelled."""
        while True:
            if not subscriber.up:
                # Nothing can come back over no subscription, and the next one
                # calls restart(): keep no record that could only grow.
                self._sent.clear()
                self._taken.clear()
            if subscriber.up and self._deaf(subscriber.last_received):
                self.misses += 1
                log.warning("a canary did not come back: subscription is deaf; rebuilding it")
                self._sent.clear()
                self._taken.clear()
                # The new subscription calls restart().
                await subscriber.rebuild()
            else:
                await self.probe()
            await asyncio.sleep(self._interval)

    async def probe(self) -> None:
        """Publish one canary; a failure marks the publisher down."""
        self._seq += 1
        seq = self._seq
        self._sent[seq] = time.monotonic()
        try:
            await self._publisher.client.spublish(self._channel, str(seq))
        except IO_ERRORS as exc:
            self._publisher.up = False
            self._sent.pop(seq, None)
            self._report(exc)
            return
        self._publisher.up = True
        self._report(None)
        if seq in self._sent:  # not back yet
            self._taken[seq] = time.monotonic()

    def _deaf(self, last_received: float) -> bool:
        now = time.monotonic()
        if now - last_received <= self._timeout:
            return False  # traffic arrives: behind, not deaf
        return any(now - taken > self._timeout for taken in self._taken.values())

    def _report(self, exc: BaseException | None) -> None:
        # One line when the canary starts failing or fails differently (a
        # NOPERM repeats every interval), one when it works again.
        error = "" if exc is None else str(exc) or repr(exc)
        if error == self._last_error:
            return
        if exc is None:
            log.info("the canary publish works again")
        else:
            log.warning(
                "the canary publish failed (%s); this node is not ready "
                "until one of its canaries comes back",
                brief(exc),
            )
        self._last_error = error
