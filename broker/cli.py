"""The ``broker`` command line: one subcommand per module of :mod:`broker.commands`."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
from collections.abc import Sequence

__all__ = ["build_parser", "main", "version"]

# Imported lazily by name so that `broker serve` does not load client or
# benchmark code.
_COMMANDS = (
    "broker.commands.serve",
    "broker.commands.clients",
    "broker.commands.bench",
    "broker.commands.top",
)


def version() -> str:
    """The installed version of the ``roomcast`` distribution."""
    try:
        return importlib.metadata.version("roomcast")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed; pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="broker",
        description="roomcast: a room-based pub/sub message broker over WebSocket.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``broker`` and ``python -m broker``; returns the exit code."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code
