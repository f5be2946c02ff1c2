"""Subcommands of the ``broker`` command line, one module each.

Each module has ``register(subparsers)``, which adds its parser and sets
``func`` (taking the parsed namespace, returning the exit code).
"""
