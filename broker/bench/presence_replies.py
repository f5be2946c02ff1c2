"""What a ``presence`` reply of the bench must be, and what the replies of a
run added up to (no I/O; docs/HISTORY-PRESENCE.md, "Presence").

A reply is right when it tells the whole room: ``count`` is every member,
``users`` is 0 (the bench's sessions are anonymous), and ``members`` lists
``min(count, MAX_PRESENCE_MEMBERS)`` distinct sessions, with ``truncated``
exactly when there are more.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import protocol
from broker.bench.histogram import Histogram

__all__ = ["Asked", "is_right"]


def is_right(reply: protocol.PresenceReply, room: str, members: int) -> bool:
    """Whether ``reply`` tells all ``members`` anonymous sessions of ``room`` (no I/O)."""
    listed = min(members, protocol.MAX_PRESENCE_MEMBERS)
    truncated = reply.truncated is True
    return (
        reply.room == room
        and reply.count == members
        and reply.users == 0
        and len(reply.members) == listed
        and len({m.session for m in reply.members}) == listed
        and truncated == (members > protocol.MAX_PRESENCE_MEMBERS)
    )


@dataclass
class Asked:
    """What the requests of one
    :meth:`~broker.bench.presence_asker.Asker.ask` got.

    Attributes:
        hist: reply times, in µs (error replies included: they are replies).
        right: replies that told the whole room.
        wrong: presence replies that did not.
        errors: error replies, by code.
        first_ns: when the first request was sent.
        last_ns: when the last reply arrived.
    """

    hist: Histogram = field(default_factory=Histogram)
    right: int = 0
    wrong: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    first_ns: int = 0
    last_ns: int = 0
