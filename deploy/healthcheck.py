"""Container health check: exit 0 when this node's ``GET /healthz`` answers 200.

The slim Python image has no curl, so the image's HEALTHCHECK runs this with
the interpreter it already has. It asks the port the node listens on
(``BROKER_PORT``, as the node itself reads it) on loopback, so it works
whatever ``BROKER_HOST`` says. Any other status (503 while the node drains or
cannot reach Redis), a refused connection or a timeout exits 1.
"""

from __future__ import annotations

import os
import sys
import urllib.request

__all__ = ["main"]


def main() -> int:
    """Probe ``/healthz`` once; return the process exit code."""
    port = os.environ.get("BROKER_PORT", "8765")
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        # urlopen raises HTTPError (an OSError) for 503, so only 200 gets through.
        with urllib.request.urlopen(url, timeout=2) as response:
            healthy = response.status == 200
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
