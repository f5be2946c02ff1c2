"""``broker serve``: run a broker node."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from broker.config import OPTIONS, Config, from_env_and_args
from broker.runtime import run_async

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``serve`` and its options (from :data:`broker.config.OPTIONS`)."""
    parser = subparsers.add_parser(
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
        if option.metavar is None:
            parser.add_argument(
                option.flag, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            parser.add_argument(
                option.flag, type=option.parse, metavar=option.metavar, help=help_text
            )
    parser.set_defaults(func=_serve)


def configure_logging(level: str) -> None:
    """Log to stderr, one line per event."""
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
    configure_logging(config.log_level)
    if config.workers > 1:
        if config.redis_url is None:
            print(
                "broker serve: --workers > 1 needs --redis-url: the in-memory backend "
                "cannot span processes, so workers would not see each other's rooms",
                file=sys.stderr,
            )
            return 2
        from broker.workers import supervise

        return run_async(supervise(config))
    return run_async(run(config))
