"""What a client is told when a publish fails: the one mapping from a
backend failure to an error reply, used by ``say`` (an ``error`` frame) and
by ``POST /publish`` (an HTTP error body).

``unavailable`` promises that nothing was sent (PROTOCOL.md, "Error codes"),
so it answers only :class:`~broker.backends.base.BackendUnavailable`. A
publish whose fate is unknown (:class:`~broker.backends.base.OutcomeUnknown`:
written, then Redis stalled past the timeout) may still be delivered, and is
answered ``internal`` (docs/PROTOCOL-ADDITIONS.md, "``internal`` after a
``say``").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from broker.backends.base import BackendUnavailable, OutcomeUnknown
from protocol import ErrorCode

__all__ = ["PublishFailure", "failure_of", "outcome_of"]


@dataclass(frozen=True, slots=True)
class PublishFailure:
    """A failed publish, as every interface reports it.

    Attributes:
        code: the wire error code.
        message: the text for the client.
        http_status: the status ``POST /publish`` answers with.
    """

    code: ErrorCode
    message: str
    http_status: int


NOTHING_SENT = PublishFailure(
    ErrorCode.UNAVAILABLE, "the backend could not take the publish; nothing was sent", 503
)
UNKNOWN = PublishFailure(
    ErrorCode.INTERNAL,
    "Redis did not confirm the publish; it may still reach the other members",
    504,
)


def failure_of(error: BaseException) -> PublishFailure:
    """The failure to report for a publish that raised ``error``."""
    if isinstance(error, OutcomeUnknown):
        return UNKNOWN
    if isinstance(error, BackendUnavailable | asyncio.CancelledError):
        return NOTHING_SENT
    return PublishFailure(ErrorCode.INTERNAL, "internal error", 500)


def outcome_of(accepted: asyncio.Future[Any]) -> PublishFailure | None:
    """``None`` if the settled publish ``accepted`` succeeded, else its failure."""
    if accepted.cancelled():
        return NOTHING_SENT
    error = accepted.exception()
    return None if error is None else failure_of(error)
