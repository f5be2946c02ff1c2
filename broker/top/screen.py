"""The text of one ``broker top`` screen (no I/O): a title, one row per
node, and a row of cluster totals, each line cut to the terminal's width."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from broker.top.view import NodeView, totals

__all__ = ["COLUMNS", "render"]


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _milliseconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}ms"


def _mebibytes(size: float | None) -> str:
    return "-" if size is None else f"{size / (1 << 20):.1f}MiB"


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its heading, the field it shows, and how."""

    heading: str
    field: str
    show: Callable[[Any], str]
    width: int


COLUMNS: tuple[Column, ...] = (
    Column("NODE", "node", _text, 14),
    Column("URL", "url", _text, 24),
    Column("CONNS", "connections", _number, 7),
    Column("ROOMS", "rooms", _number, 7),
    Column("MEMBERS", "memberships", _number, 8),
    Column("IN/s", "messages_in_per_s", _number, 8),
    Column("OUT/s", "messages_out_per_s", _number, 8),
    Column("DELIV/s", "deliveries_per_s", _number, 8),
    Column("SLOW", "slow_consumer_disconnects", _number, 6),
    Column("BACKEND", "backend", _text, 9),
    Column("LOOP LAG", "loop_lag_seconds", _milliseconds, 9),
    Column("RSS", "rss_bytes", _mebibytes, 10),
)


def _row(cells: Sequence[str]) -> str:
    # Text columns (node, url) to the left, figures to the right.
    parts = [
        cell.ljust(column.width) if index < 2 else cell.rjust(column.width)
        for index, (column, cell) in enumerate(zip(COLUMNS, cells, strict=True))
    ]
    return " ".join(parts).rstrip()


def _node_row(view: NodeView) -> str:
    if not view.up:
        down = f"down ({view.error})" if view.error else "down"
        return f"{_row([_text(view.node), view.url] + [''] * (len(COLUMNS) - 2))} {down}"
    return _row([column.show(getattr(view, column.field)) for column in COLUMNS])


def _totals_row(views: Sequence[NodeView]) -> str:
    summed = totals(views)
    cells = [f"{summed['nodes_up']} up", f"{summed['nodes_down']} down"]
    for column in COLUMNS[2:]:
        cells.append(column.show(summed.get(column.field)) if column.field in summed else "")
    return _row(cells)


def render(views: Sequence[NodeView], clock: str, width: int = 200) -> list[str]:
    """The lines of one screen.

    Args:
        views: one per node, in the order given on the command line.
        clock: the wall-clock time to show in the title.
        width: the terminal's width; longer lines are cut.
    """
    title = f"roomcast top - {len(views)} nodes - {clock} - rates per second - q quits"
    heading = _row([column.heading for column in COLUMNS])
    lines = [title, "", heading, *(_node_row(view) for view in views), "", _totals_row(views)]
    return [line[:width] for line in lines]
