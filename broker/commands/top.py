"""``broker top URL [URL ...]``: every node of a cluster in one terminal,
refreshed every second (``q`` or Ctrl-C quits), or one snapshot as JSON
with ``--json``.

Each refresh reads every node's ``/healthz`` and ``/metrics`` at once;
rates come from the previous reading of the same node. A node that does
not answer is shown as down and read again at the next refresh.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``top`` and its options."""
    parser = subparsers.add_parser(
        "top",
        help="live view of a cluster's nodes (connections, rooms, rates)",
        description=(
            "Show every node given: open connections, rooms, memberships, messages in "
            "and out and deliveries per second, slow-consumer disconnects, backend state, "
            "event-loop lag and resident memory, refreshed every --interval seconds. "
            "q or Ctrl-C quits. A node that does not answer is shown as down."
        ),
    )
    parser.add_argument(
        "urls",
        nargs="+",
        metavar="URL",
        help="base URL of a node (http://127.0.0.1:8765; host:port and ws:// work too)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between refreshes, and between the two readings of --json (1.0)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one snapshot (rates over --interval) as JSON and exit",
    )
    parser.set_defaults(func=_top)


def _top(args: argparse.Namespace) -> int:
    from broker.top.scrape import base_url

    if not args.interval > 0:
        print(f"broker top: --interval must be more than 0, not {args.interval:g}", file=sys.stderr)
        return 2
    urls = [base_url(url) for url in args.urls]
    if args.json:
        return _print_snapshot(urls, args.interval)
    try:
        return _live(urls, args.interval)
    except KeyboardInterrupt:
        return 0


def _timeout(interval: float) -> float:
    # A node that does not answer must not hold the refresh up for long.
    return min(max(interval * 0.8, 0.2), 2.0)


def _print_snapshot(urls: Sequence[str], interval: float) -> int:
    from broker.top.scrape import scrape_all
    from broker.top.view import node_view, snapshot

    first = scrape_all(urls, _timeout(interval))
    time.sleep(interval)  # the window the rates are measured over
    second = scrape_all(urls, _timeout(interval))
    views = [node_view(before, now) for before, now in zip(first, second, strict=True)]
    json.dump(snapshot(views), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _live(urls: Sequence[str], interval: float) -> int:
    from broker.top.scrape import Scrape, scrape_all
    from broker.top.screen import render
    from broker.top.terminal import terminal
    from broker.top.view import node_view

    previous: list[Scrape | None] = [None] * len(urls)
    with terminal() as screen:
        while True:
            due = time.monotonic() + interval
            current = scrape_all(urls, _timeout(interval))
            views = [node_view(b, now) for b, now in zip(previous, current, strict=True)]
            previous = list(current)
            screen.draw(render(views, time.strftime("%H:%M:%S"), screen.width))
            while (left := due - time.monotonic()) > 0:
                if screen.wait_key(left) in ("q", "Q"):
                    return 0
