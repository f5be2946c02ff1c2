"""What the coordinator and its worker processes say to each other: one JSON
object per line on the worker's stdin (commands) and stdout (reports).

The exchange, in order::

    coordinator                 worker
    Setup          ->
                   <-           Loaded
    Connect        ->           (opens and joins every connection it owns)
                   <-           Connected
    Warm           ->           (every publisher says one warm-up message)
                   <-           Warmed    (every member got every warm-up)
    Go             ->           (publishers start, at Go.start_ns)
                   <-           Published (this worker's publishers are done)
                   <-           Result    (every member got everything, or after Stop)
    Stop           ->
    Close          ->           (closes its connections and exits)

In the ``presence`` scenario (:mod:`broker.bench.presence`) the exchange ends
after ``Warmed`` (then ``Close``): what is measured is the coordinator's asker.

In the ``recovery`` scenario (:mod:`broker.bench.recovery`) the worker gets a
:class:`RecoverySetup` instead, and the exchange is::

    RecoverySetup  ->
                   <-           Loaded
    Connect        ->           (joins every client on the node to be killed)
                   <-           Connected
    Await          ->           (every client reached its room's position)
                   <-           Reached
    Drop           ->           (the coordinator kills the node)
                   <-           Dropped   (every connection is closed, or after a while)
    Recover        ->           (every client rejoins on another node with since)
                   <-           Recovered
    Close          ->

The body of every ``say`` is a :class:`Body`: the publisher, its sequence
number and the send time on the system-wide monotonic clock, padded to the
requested size.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "WARM_UP_SEQ",
    "Await",
    "Body",
    "Close",
    "Command",
    "ConnSpec",
    "Connect",
    "Connected",
    "Drop",
    "Dropped",
    "Go",
    "Loaded",
    "Published",
    "Reached",
    "Recover",
    "Recovered",
    "RecoverySetup",
    "Report",
    "Result",
    "RoomPosition",
    "Setup",
    "Stop",
    "Warm",
    "Warmed",
]

WARM_UP_SEQ = -1
"""Sequence number of the warm-up message each publisher says before ``Go``."""


class Body(msgspec.Struct):
    """The body of a benchmark ``say``.

    Attributes:
        p: the publisher's id (unique within a run).
        s: its sequence number, from 0; :data:`WARM_UP_SEQ` for the warm-up.
        t: ``time.monotonic_ns()`` when it was sent. CLOCK_MONOTONIC is one
            clock for every process on a Linux machine, so a receiver in
            another process can subtract it from its own reading.
        x: padding to reach the requested body size.
    """

    p: int
    s: int
    t: int
    x: str = ""


class ConnSpec(msgspec.Struct, array_like=True):
    """One connection a worker opens: where, which room, and whether it says.

    Attributes:
        url: the node's WebSocket URL.
        room: the one room it joins.
        pub: its publisher id if it says messages, else None.
        phase: seconds after the common start at which it says its first message.
        source: the loopback address it connects from (None: the kernel's choice).
    """

    url: str
    room: str
    pub: int | None = None
    phase: float = 0.0
    source: str | None = None


# --- coordinator to worker --------------------------------------------------


class _Command(msgspec.Struct, tag_field="type"):
    """Base of commands."""


class Setup(_Command, tag="setup"):
    """Everything a worker needs before connecting.

    Attributes:
        conns: the connections it owns.
        publishers: per room, the publisher ids saying in it.
        messages: messages each publisher says after ``Go``.
        window: says a publisher may have without an ``ok``.
        rate: says per second of each publisher; None: as fast as the window allows.
        body_size: bytes of each JSON body.
        concurrency: handshakes this worker has in flight at once.
        connect_rate: connections this worker starts per second at most
            (None: as fast as ``concurrency`` allows).
    """

    conns: list[ConnSpec]
    publishers: dict[str, list[int]]
    messages: int
    window: int
    rate: float | None
    body_size: int
    concurrency: int
    connect_rate: float | None = None


class Connect(_Command, tag="connect"):
    """Open and join every connection."""


class Warm(_Command, tag="warm"):
    """Say the warm-up messages and wait until every member got them."""


class Go(_Command, tag="go"):
    """Start publishing at ``start_ns`` (``time.monotonic_ns()``)."""

    start_ns: int


class Stop(_Command, tag="stop"):
    """Report now, whatever has arrived."""


class Close(_Command, tag="close"):
    """Close every connection and exit."""


class RoomPosition(msgspec.Struct, array_like=True):
    """A room's position: its last ``offset`` in ``epoch``."""

    offset: int
    epoch: str


class RecoverySetup(_Command, tag="recovery_setup"):
    """The clients of a ``recovery`` run (instead of :class:`Setup`).

    Attributes:
        conns: the clients it owns, each on the node to be killed.
        concurrency: handshakes this worker has in flight at once.
    """

    conns: list[ConnSpec]
    concurrency: int


class Await(_Command, tag="await"):
    """Wait until every client has reached its room's position in ``positions``."""

    positions: dict[str, RoomPosition]


class Drop(_Command, tag="drop"):
    """Wait until every client's connection is closed (its node is being killed)."""


class Recover(_Command, tag="recover"):
    """Rejoin every client at ``url`` with ``since`` = its last position.

    Attributes:
        url: the surviving node's WebSocket URL.
        kill_ns: when the node was killed (``time.monotonic_ns()``).
        positions: each room's position now: the replay must end there.
    """

    url: str
    kill_ns: int
    positions: dict[str, RoomPosition]


Command = Setup | Connect | Warm | Go | Stop | Close | RecoverySetup | Await | Drop | Recover


# --- worker to coordinator --------------------------------------------------


class _Report(msgspec.Struct, tag_field="type"):
    """Base of reports."""


class Loaded(_Report, tag="loaded"):
    """The worker runs and has its plan."""

    pid: int


class Connected(_Report, tag="connected"):
    """Every connection is open and joined, or has failed.

    Attributes:
        joined: connections open and joined.
        failed: connections that could not connect or join.
        errors: a few failure messages, for the report.
        hist: time from starting a connection to its join ``ok``, in µs
            (sparse :class:`~broker.bench.histogram.Histogram` counts).
        hist_total: the sum of those times, in µs.
        hist_max: the largest, in µs.
        first_ns: when the first connection started.
        last_ns: when the last join ``ok`` arrived.
        cpu_s: the worker's CPU seconds spent in this phase.
        limit: the limit this worker met, in one line (see
            :mod:`broker.bench.limits`); None: none.
    """

    joined: int
    failed: int
    errors: list[str]
    hist: dict[int, int]
    hist_total: int
    hist_max: int
    first_ns: int
    last_ns: int
    cpu_s: float
    limit: str | None = None


class Warmed(_Report, tag="warmed"):
    """Every member received the warm-up from every publisher of its room."""

    missing: int


class Published(_Report, tag="published"):
    """Every publisher of this worker has said all and got every reply."""


class Result(_Report, tag="result"):
    """What this worker saw between ``Go`` and now.

    Attributes:
        expected: deliveries its members should get.
        delivered: distinct messages its members got.
        missing, duplicates, out_of_order, unexpected: anomalies; all 0 in a good run.
        offset_gaps, offset_backwards, epoch_changes: anomalies of the rooms'
            positions (:mod:`broker.bench.positions`); all 0 in a good run.
        joins_with_position: joins whose ``ok`` carried a position (history on).
        closed: connections the server closed during the run.
        hist, hist_total, hist_max: end-to-end latency in µs.
        first_recv_ns, last_recv_ns: first and last delivery (0 if none).
        says, acks, errors: says sent, ``ok`` replies, ``error`` replies by code.
        first_send_ns, last_send_ns, last_ack_ns: publisher timing (0 if none).
        max_lag_ms: how far the publishers fell behind their schedule at worst.
        cpu_s, wall_s: the worker's CPU and wall-clock seconds since ``Go``.
    """

    expected: int
    delivered: int
    missing: int
    duplicates: int
    out_of_order: int
    unexpected: int
    offset_gaps: int
    offset_backwards: int
    epoch_changes: int
    joins_with_position: int
    closed: int
    hist: dict[int, int]
    hist_total: int
    hist_max: int
    first_recv_ns: int
    last_recv_ns: int
    says: int
    acks: int
    errors: dict[str, int]
    first_send_ns: int
    last_send_ns: int
    last_ack_ns: int
    max_lag_ms: float
    cpu_s: float
    wall_s: float


class Reached(_Report, tag="reached"):
    """Clients that had not reached their room's position in time (0 in a good run)."""

    behind: int


class Dropped(_Report, tag="dropped"):
    """How many connections the kill closed, and how many were still open."""

    closed: int
    still_open: int


class Recovered(_Report, tag="recovered"):
    """What rejoining with ``since`` gave this worker's clients.

    Attributes:
        recovered: ``ok`` with ``recovered: true`` after exactly the missing
            offsets, in order, ending at the room's position.
        not_recovered: ``ok`` without ``recovered: true``.
        wrong: ``recovered: true``, but the messages before the ``ok`` were
            not exactly the missing offsets in order (or the ``ok`` was not at
            the room's position).
        failed: could not reconnect or rejoin (refused, error reply, timeout).
        replayed: messages received before the ``ok`` s.
        errors: the first few failures.
        hist, hist_total, hist_max: time from the kill to each ``ok`` of a
            recovered client, in µs.
        first_ns: when the first client started rejoining.
        last_ns: when the last ``ok`` of a recovered client arrived (0 if none).
        cpu_s: the worker's CPU seconds spent rejoining.
    """

    recovered: int
    not_recovered: int
    wrong: int
    failed: int
    replayed: int
    errors: list[str]
    hist: dict[int, int]
    hist_total: int
    hist_max: int
    first_ns: int
    last_ns: int
    cpu_s: float


Report = Loaded | Connected | Warmed | Published | Result | Reached | Dropped | Recovered
