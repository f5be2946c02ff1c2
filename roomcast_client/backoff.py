"""How long to wait before reconnecting: exponential backoff with full
jitter. No I/O.

*Whether* to reconnect after a close is not decided here: the protocol
package's table (:data:`protocol.CLOSE_RULES`, read through
:func:`protocol.reconnect_rule`) is the one the server and every SDK share.
:class:`~protocol.ReconnectRule.AT_ONCE` (1001, the node shuts down or
drains) reconnects at once to the next URL, then backs off if that fails;
:class:`~protocol.ReconnectRule.STOP` (1003, 1008) ends the client;
everything else (1006 included) backs off with this module's policy.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["Reconnect"]


@dataclass(frozen=True, slots=True)
class Reconnect:
    """How a client reconnects.

    The n-th consecutive failed attempt (from 0) is followed by a pause drawn
    uniformly from ``[0, min(max_delay, initial_delay * factor**n)]`` ("full
    jitter"), so that many clients dropped at once do not come back at once.

    Attributes:
        initial_delay: upper bound of the first pause, in seconds.
        max_delay: cap of every pause, in seconds.
        factor: growth of the bound per failed attempt.
        max_attempts: consecutive failed attempts after which the client
            gives up and ends; ``None`` tries forever.
    """

    initial_delay: float = 0.25
    max_delay: float = 10.0
    factor: float = 2.0
    max_attempts: int | None = 100

    def __post_init__(self) -> None:
        if self.initial_delay < 0 or self.max_delay < 0 or self.factor < 1:
            raise ValueError("delays must be >= 0 and factor >= 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1 or None")

    def bound(self, failures: int) -> float:
        """The largest pause after ``failures`` consecutive failed attempts."""
        try:
            grown = self.initial_delay * self.factor**failures
        except OverflowError:  # long after the cap was reached
            grown = math.inf
        return min(self.max_delay, grown)

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """A pause after ``failures`` consecutive failed attempts, with full jitter.

        Args:
            failures: failed attempts so far (0 before the first retry).
            rng: source of randomness (tests pass a seeded one).

        Returns:
            Seconds to wait before the next attempt.
        """
        return (rng or random).uniform(0.0, self.bound(failures))
