"""The textbook baseline: ``python -m broker.bench.textbook --port PORT``.

What a tutorial builds: a ``websockets`` server, a ``set()`` of connections
per room, and per message ``await asyncio.gather(*[c.send(m) for c in
clients])``. It speaks just enough of protocol v1 for ``broker bench`` to
drive it: ``welcome``, ``join`` -> ``ok``, ``say`` -> ``message`` to the other
members, then ``ok``. No ``joined``/``left`` events, no validation beyond what
the load generator needs, no back-pressure. It runs on the same event loop as
the broker (uvloop when installed), so a comparison measures the design, not
the loop.

PEERS.md, "What limited each": this server waits for the whole fan-out
before it reads the connection's next message.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
from collections import defaultdict

import msgspec
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

__all__ = ["main", "run"]


class _Request(msgspec.Struct):
    type: str
    room: str = ""
    body: msgspec.Raw = msgspec.Raw(b"null")
    ref: int | str | None = None


_decode = msgspec.json.Decoder(_Request).decode
_encode = msgspec.json.encode
_rooms: defaultdict[str, set[ServerConnection]] = defaultdict(set)
_ids = itertools.count(1)


async def _handler(ws: ServerConnection) -> None:
    session = f"s-{next(_ids)}"
    joined: set[str] = set()
    welcome = {"type": "welcome", "session": session, "node": "textbook", "protocol": 1}
    await ws.send(_encode(welcome), text=True)
    try:
        async for frame in ws:
            request = _decode(frame)
            if request.type == "join":
                _rooms[request.room].add(ws)
                joined.add(request.room)
            elif request.type == "say" and request.room in joined:
                message = _encode(
                    {"type": "message", "room": request.room, "from": session, "body": request.body}
                )
                clients = _rooms[request.room]
                await asyncio.gather(
                    *[c.send(message, text=True) for c in clients if c is not ws],
                    return_exceptions=True,
                )
            if request.ref is not None:
                await ws.send(_encode({"type": "ok", "ref": request.ref}), text=True)
    except ConnectionClosed:
        pass
    finally:
        for room in joined:
            _rooms[room].discard(ws)


def _healthz(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/ws":
        return None
    body = b'{"status":"ok","node":"textbook"}'
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(200, "OK", headers, body)


async def run(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve(_handler, host, port, process_request=_healthz, compression=None):
        await stop.wait()


def main() -> int:
    """Parse ``--host``/``--port`` and serve."""
    from broker.runtime import run_async

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    run_async(run(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
