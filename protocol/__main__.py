"""``python -m protocol schema``: print the JSON Schema of the wire protocol."""

from __future__ import annotations

import sys

from protocol.schema import json_schema_text


def main(argv: list[str] | None = None) -> int:
    """Run the protocol command line; returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["schema"]:
        print("usage: python -m protocol schema", file=sys.stderr)
        return 2
    sys.stdout.write(json_schema_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
