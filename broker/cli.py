"""The ``broker`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from broker.config import OPTIONS, Config, from_env_and_args

__all__ = ["main", "run_async"]


def _add_serve(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run a broker node",
        description=(
            "Run a broker node: WebSocket clients at ws://HOST:PORT/ws, health at /healthz. "
            "Every option can also be set with the environment variable shown; "
            "a flag wins over its variable."
        ),
    )
    for option in OPTIONS:
        help_text = f"{option.help} [env {option.env}; default {option.default}]"
        if option.parse is int or option.parse is float:
            serve.add_argument(
                option.flag, type=option.parse, metavar=option.metavar, help=help_text
            )
        elif option.metavar is None:
            serve.add_argument(
                option.flag, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            serve.add_argument(
                option.flag, type=option.parse, metavar=option.metavar, help=help_text
            )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="broker",
        description="roomcast: a room-based pub/sub message broker over WebSocket.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(subparsers)
    return parser


def run_async(coro: Coroutine[Any, Any, int]) -> int:
    """Run ``coro`` on uvloop when it is installed, else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # websockets logs every refused handshake at INFO; ours say more.
    logging.getLogger("websockets").setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _serve(args: argparse.Namespace) -> int:
    from broker.server import run

    try:
        config: Config = from_env_and_args(vars(args))
    except (TypeError, ValueError) as exc:
        print(f"broker serve: {exc}", file=sys.stderr)
        return 2
    _configure_logging(config.log_level)
    return run_async(run(config))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``broker`` and ``python -m broker``."""
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    raise AssertionError(f"unhandled command {args.command!r}")
