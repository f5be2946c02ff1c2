"""What the kernel says about a process: CPU time and resident memory (Linux /proc).

These are read from outside the process, so they work for any broker whose
PID we know: one we spawned, or one given with ``--server-pid``. A PID
stands for its whole process tree, so ``broker serve --workers N`` (a
supervisor and its node processes) is measured as one server.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "cpu_seconds",
    "cpu_since",
    "process_tree",
    "rss_bytes",
    "total_cpu_seconds",
    "tree_cpu_seconds",
    "tree_rss_bytes",
    "tree_rss_each",
]

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds ``pid`` has used (``/proc/PID/stat``).

    Resolution is one clock tick (usually 10 ms), so measure windows of
    seconds, not milliseconds.

    Raises:
        OSError: no such process (or no /proc).
    """
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces and parentheses: split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / _TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (``VmRSS`` of ``/proc/PID/status``).

    Raises:
        OSError: no such process (or no /proc).
        ValueError: the kernel did not report VmRSS (a zombie).
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for pid {pid}")


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])  # field 4 of proc(5)


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant of it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def _sum_alive(pids: list[int], read: Callable[[int], float]) -> float:
    total = 0.0
    for index, pid in enumerate(pids):
        try:
            total += read(pid)
        except (OSError, ValueError):
            if index == 0:
                raise  # the root itself is gone: no measurement
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants.

    Raises:
        OSError: ``pid`` itself is gone.
    """
    return _sum_alive(process_tree(pid), cpu_seconds)


def tree_rss_bytes(pid: int) -> int:
    """Resident bytes of ``pid`` and its live descendants.

    Raises:
        OSError: ``pid`` itself is gone.
    """
    return int(_sum_alive(process_tree(pid), rss_bytes))


def tree_rss_each(pid: int) -> list[tuple[int, int]]:
    """``(pid, resident bytes)`` of ``pid`` and each live descendant (for
    ``serve --workers N``: the supervisor and every worker)."""
    each = []
    for member in process_tree(pid):
        try:
            each.append((member, rss_bytes(member)))
        except (OSError, ValueError):
            continue  # ended since the tree was read
    return each


def total_cpu_seconds(pids: tuple[int, ...]) -> float | None:
    """CPU seconds of every process tree in ``pids``; None when there are none.

    Raises:
        OSError: one of ``pids`` is gone.
    """
    return sum(tree_cpu_seconds(pid) for pid in pids) if pids else None


def cpu_since(before: float | None, pids: tuple[int, ...]) -> float | None:
    """CPU seconds ``pids`` used since :func:`total_cpu_seconds` read ``before``.

    Raises:
        OSError: one of ``pids`` is gone.
    """
    after = total_cpu_seconds(pids)
    return after - before if after is not None and before is not None else None
