"""``broker chat``, ``broker say``, ``broker listen`` and ``broker who``: command-line clients
built on the SDK (:mod:`roomcast_client`). This module only parses arguments;
the tools themselves are in :mod:`broker.commands.tools`, imported when one
runs (so that ``broker serve`` never loads client code).
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Callable
from typing import Any

from broker.runtime import run_async

__all__ = ["register"]


def _runner(tool: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        main = getattr(importlib.import_module("broker.commands.tools"), tool)
        code: int = run_async(main(args))
        return code

    return run


def _add_token(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token",
        default=os.environ.get("BROKER_TOKEN"),
        help="JSON Web Token for brokers that require one [env BROKER_TOKEN]",
    )


def register(subparsers: Any) -> None:
    """Add ``chat``, ``say``, ``listen`` and ``who``."""
    chat = subparsers.add_parser(
        "chat",
        help="chat in a room from the terminal",
        description=(
            'Join ROOM and say every line typed on stdin as {"text": LINE} '
            '(plus "name": NAME with --name); print what others say. '
            "Ctrl-D leaves the room and exits 0."
        ),
    )
    chat.add_argument("url", metavar="URL", help="broker URL, e.g. ws://127.0.0.1:8765/ws")
    _add_token(chat)
    chat.add_argument("--room", default="lobby", help="room to chat in [default lobby]")
    chat.add_argument("--name", help="name sent with every line")
    chat.set_defaults(func=_runner("chat"))

    say = subparsers.add_parser(
        "say",
        help="say one message and exit",
        description=(
            "Join ROOM, say BODY (parsed as JSON when it is valid JSON, else sent as a "
            "string) and exit 0 once the broker accepted it; on an error print its code "
            "on stderr and exit 2 (a refused handshake: the broker's reason and the fix)."
        ),
    )
    say.add_argument("url", metavar="URL", help="broker URL, e.g. ws://127.0.0.1:8765/ws")
    _add_token(say)
    say.add_argument("room", metavar="ROOM")
    say.add_argument("body", metavar="BODY")
    say.add_argument("--timeout", type=float, default=10.0, help="seconds [default 10]")
    say.set_defaults(func=_runner("say"))

    listen = subparsers.add_parser(
        "listen",
        help="print the events of rooms until interrupted",
        description=(
            "Join every ROOM and print each event: a readable line, or with --json one "
            "JSON object per line (flushed, for piping). Runs until SIGINT or SIGTERM."
        ),
    )
    listen.add_argument("url", metavar="URL", help="broker URL, e.g. ws://127.0.0.1:8765/ws")
    _add_token(listen)
    listen.add_argument("rooms", metavar="ROOM", nargs="+")
    listen.add_argument("--json", action="store_true", help="one JSON object per line")
    listen.set_defaults(func=_runner("listen"))

    who = subparsers.add_parser(
        "who",
        help="print who is in a room, cluster-wide",
        description=(
            "Join ROOM (only a member may ask; its members see this tool join and leave), "
            "print one line per member (SESSION USER, '-' when anonymous; at most 1,000) "
            "and the counts, which include this tool's own session, and exit 0; with "
            "--json, the reply as one JSON object. On an error print its code on stderr "
            "and exit 2. GET /rooms/ROOM/presence (with --api-key) reads without joining."
        ),
    )
    who.add_argument("url", metavar="URL", help="broker URL, e.g. ws://127.0.0.1:8765/ws")
    _add_token(who)
    who.add_argument("room", metavar="ROOM")
    who.add_argument("--json", action="store_true", help="the reply as one JSON object")
    who.add_argument("--timeout", type=float, default=10.0, help="seconds [default 10]")
    who.set_defaults(func=_runner("who"))
