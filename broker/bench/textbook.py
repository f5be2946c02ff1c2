"""The textbook baseline: ``python -m broker.bench.textbook --port PORT``.

What a tutorial builds: a ``websockets`` server, a ``set()`` of connections
per room, and per message ``await asyncio.gather(*[c.send(m) for c in
clients])``. It speaks just enough of protocol v1 for ``broker bench`` to
drive it: ``welcome``, ``join`` -> ``ok``, ``say`` -> ``message`` to the other
members, then ``ok``. No ``joined``/``left`` events, no back-pressure. It
decodes and encodes frames with the ``protocol`` package, as the broker does,
and runs on the same event loop (uvloop when installed), so a comparison
measures the design, not the JSON handling or the loop.

PEERS.md, "What limited each": this server waits for the whole fan-out
before it reads the connection's next message.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
from collections import defaultdict

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

import protocol

__all__ = ["main", "run"]

_rooms: defaultdict[str, set[ServerConnection]] = defaultdict(set)
_ids = itertools.count(1)


async def _handler(ws: ServerConnection) -> None:
    session = f"s-{next(_ids)}"
    joined: set[str] = set()
    await ws.send(protocol.encode(protocol.Welcome(session=session, node="textbook")), text=True)
    try:
        async for frame in ws:
            request = protocol.decode_request(frame)
            match request:
                case protocol.ProtocolError():
                    await ws.send(protocol.error_frame(request), text=True)
                    continue
                case protocol.Join(room=room):
                    _rooms[room].add(ws)
                    joined.add(room)
                case protocol.Say(room=room, body=body) if room in joined:
                    message = protocol.encode(protocol.Message(room=room, from_=session, body=body))
                    clients = _rooms[room]
                    await asyncio.gather(
                        *[c.send(message, text=True) for c in clients if c is not ws],
                        return_exceptions=True,
                    )
                case _:
                    pass  # what the load generator does not need is only acknowledged
            if request.ref is not None:
                await ws.send(protocol.encode(protocol.Ok(ref=request.ref)), text=True)
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
