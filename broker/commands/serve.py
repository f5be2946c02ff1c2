"""``broker serve``: run a broker node.

Every setting is checked before anything starts (:mod:`broker.config`); a
mistake the node can only meet while starting (an address it cannot bind)
is reported the same way: one line on stderr naming what is wrong, exit
code 2, no traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from broker.config import OPTIONS, Config, from_env_and_args, split_list
from broker.logs import configure_logging
from broker.runtime import run_async

__all__ = ["register"]

USAGE_ERROR = 2  # what argparse returns for a bad command line, too


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
            # Parsed by broker.config, not by argparse, so that a bad flag and
            # a bad variable get the same one-line message.
            parser.add_argument(option.flag, metavar=option.metavar, help=help_text)
    parser.set_defaults(func=_serve)


def _fail(message: object) -> int:
    print(f"broker serve: {message}", file=sys.stderr)
    return USAGE_ERROR


def _check_auth(config: Config) -> None:
    """Load the token key once before starting, so that a missing key file or
    algorithms that do not fit the key are reported like any bad option."""
    from broker.tokens import load_authenticator

    load_authenticator(
        config.jwt_secret,
        config.jwt_public_key,
        split_list(config.jwt_algorithms),
        leeway=config.jwt_leeway,
        audience=config.jwt_audience,
        issuer=config.jwt_issuer,
    )


def _serve(args: argparse.Namespace) -> int:
    try:
        config = from_env_and_args(vars(args))
        _check_auth(config)
    except ValueError as exc:
        return _fail(exc)
    if config.workers > 1 and config.redis_url is None and config.redis_cluster is None:
        return _fail(
            "--workers > 1 needs --redis-url or --redis-cluster: the in-memory backend "
            "cannot span processes, so workers would not see each other's rooms"
        )
    configure_logging(config.log_level, config.log_format)
    if config.workers > 1:
        from broker.workers import supervise

        return run_async(supervise(config))
    from broker.backends.base import BackendUnavailable
    from broker.server import CannotListen, run

    try:
        return run_async(run(config))
    except (CannotListen, BackendUnavailable) as exc:
        # BackendUnavailable at start: Redis refused or is unreachable; its
        # message already says which, in one line (broker/backends/redis/errors.py).
        return _fail(exc)
