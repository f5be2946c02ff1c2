"""The limits a load generator meets on one machine, told in one line each.

Past a limit, connecting more only fails the same way (and may hang a run
on timeouts), so the first failure that names a limit stops the worker's
connecting and is reported as ``limit met: ...``:

* the file descriptors one process may hold (``RLIMIT_NOFILE``): checked
  before connecting, and recognised in ``EMFILE``/``ENFILE``;
* the ephemeral ports from one source address to one destination
  (``EADDRNOTAVAIL``): ``--source-addresses`` adds sources;
* the server refusing more (HTTP 503: its ``--max-connections``, or draining),
  or resetting them in the handshake (out of descriptors itself).
"""

from __future__ import annotations

import errno
import resource
from pathlib import Path

from broker.bench.wsclient import HandshakeError

__all__ = [
    "FDS_PER_PROCESS_SPARE",
    "fd_limit",
    "fd_shortfall",
    "limit_of",
    "port_range_size",
    "source_addresses",
]

FDS_PER_PROCESS_SPARE = 64
"""Descriptors a worker needs besides its connections (pipes, the loop, imports)."""

_PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_DEFAULT_PORT_RANGE = 28232  # Linux's default 32768-60999


def fd_limit() -> int:
    """The file descriptors this process may hold now (the soft limit)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 30


def fd_shortfall(connections: int) -> str | None:
    """The limit line if ``connections`` sockets do not fit this process, else None."""
    limit = fd_limit()
    needed = connections + FDS_PER_PROCESS_SPARE
    if needed <= limit:
        return None
    return (
        f"file-descriptor limit: a worker may hold {limit} (RLIMIT_NOFILE) and needs "
        f"{needed} for {connections} connections: raise --clients-procs"
    )


def port_range_size() -> int:
    """How many ephemeral ports one (source, destination) pair may use."""
    try:
        low, high = (int(x) for x in _PORT_RANGE.read_text().split())
    except (OSError, ValueError):
        return _DEFAULT_PORT_RANGE
    return high - low + 1


def limit_of(exc: BaseException, where: str) -> str | None:
    """The limit ``exc`` says was met connecting ``where`` (``url`` or ``url
    from source``), in one line; None when it is an ordinary failure."""
    if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
        return (
            f"file-descriptor limit: this worker may hold {fd_limit()} (RLIMIT_NOFILE; "
            f"{exc.strerror}): raise --clients-procs"
        )
    if isinstance(exc, OSError) and exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"ephemeral ports: no local port left connecting {where} ({port_range_size()} "
            "in ip_local_port_range per source and destination): raise --source-addresses"
        )
    # The server's limits are the same from every source: one line for all.
    url = where.split(" from ", 1)[0]
    if isinstance(exc, HandshakeError) and " 503" in str(exc):
        return f"the server refused more connections ({url}: {exc}): its --max-connections"
    if isinstance(exc, ConnectionResetError) or (
        isinstance(exc, HandshakeError) and f"[Errno {errno.ECONNRESET}]" in str(exc)
    ):
        # A node out of descriptors cannot accept: the kernel resets what waited.
        return (
            f"the server reset connections in the handshake ({url}): most likely its "
            "file-descriptor limit (one process holds at most RLIMIT_NOFILE sockets): "
            "spread the connections over --workers N or --nodes N"
        )
    return None


PORT_RANGE_SHARE = 0.8
"""Of one source's ephemeral ports to one destination, the share a run plans
to use: the rest is for TIME_WAIT leftovers of earlier runs and other programs."""


def source_addresses(count: int | None, connections_per_destination: int) -> list[str | None]:
    """The loopback addresses clients connect from, one per share of them.

    ``count`` given: that many, 127.0.0.2 onwards (the kernel answers for all
    of 127.0.0.0/8 on ``lo``). None: as many as the ephemeral port range
    needs for ``connections_per_destination`` (the most any one node URL
    gets), and just the kernel's choice while one is enough.
    """
    if count is None:
        per_source = int(port_range_size() * PORT_RANGE_SHARE)
        count = -(-connections_per_destination // per_source)
        if count <= 1:
            return [None]
    if count > 253:
        raise ValueError(f"--source-addresses: at most 253 (127.0.0.2-127.0.0.254), got {count}")
    return [f"127.0.0.{2 + i}" for i in range(count)]
