"""What ``broker chat``, ``broker say``, ``broker listen`` and ``broker who``
do, built on the SDK (:mod:`roomcast_client`). Their arguments are parsed in
:mod:`broker.commands.clients`, which imports this module only when one of
them runs.

Exit codes, the same for every tool: 0 on success (and on Ctrl-D, SIGINT or
SIGTERM for the two long-running tools); 2 when the broker refuses a request
or cannot be reached, with ``CODE: message`` on stderr (a refused handshake
as ``refused (STATUS): REASON; FIX``); 1 when the client ends on its own
(the broker refused it, or reconnecting gave up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any, assert_never

import msgspec

from protocol import Joined, Left, Message, encode
from protocol.codec import encode_presence
from roomcast_client import (
    BrokerError,
    Client,
    ClientClosed,
    ClientError,
    ConnectFailed,
    ConnectionLost,
    Disconnected,
    Event,
    Gap,
    Reconnected,
    RequestTimeout,
    RoomPresence,
    connect,
)

__all__ = [
    "EXIT_ENDED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "chat",
    "describe",
    "error_label",
    "event_json",
    "listen",
    "parse_body",
    "presence_json",
    "presence_lines",
    "refusal_hint",
    "say",
    "who",
]

EXIT_OK = 0
EXIT_ENDED = 1
EXIT_REFUSED = 2


# --- output ------------------------------------------------------------------


def describe(event: Event) -> str:
    """One readable line for ``event``.

    A message whose body is an object with a string ``text`` shows that text
    and the sender's ``name`` if any (what ``broker chat`` sends); any other
    body is shown as JSON.
    """
    match event:
        case Message(room=room, from_=sender):
            text = bytes(event.body).decode()
            with contextlib.suppress(msgspec.DecodeError):
                body = msgspec.json.decode(event.body)
                if isinstance(body, dict) and isinstance(body.get("text"), str):
                    text = body["text"]
                    if isinstance(body.get("name"), str):
                        sender = f"{body['name']} ({sender})"
            return f"[{room}] {sender}: {text}"
        case Joined(room=room, session=session):
            return f"[{room}] * {session} joined"
        case Left(room=room, session=session):
            return f"[{room}] * {session} left"
        case Disconnected(code=code, reason=reason, reconnecting=reconnecting):
            then = "reconnecting" if reconnecting else "giving up"
            return f"* disconnected (code {code}{', ' + reason if reason else ''}); {then}"
        case Reconnected(session=session, node=node, rooms=rooms, failed=failed):
            lost = f"; could not re-join {', '.join(sorted(failed))}" if failed else ""
            return f"* reconnected as {session} on {node}, in {', '.join(rooms) or 'no room'}{lost}"
        case Gap(room=room, dropped=dropped):
            return f"[{room}] * {dropped} messages dropped unread"
        case _:
            assert_never(event)


def event_json(event: Event) -> bytes:
    """``event`` as one JSON object: room events exactly as on the wire,
    ``{"type": "disconnected", ...}`` and ``{"type": "reconnected", ...}`` otherwise."""
    match event:
        case Message() | Joined() | Left():
            return encode(event)
        case Disconnected(code=code, reason=reason, reconnecting=reconnecting):
            return msgspec.json.encode(
                {
                    "type": "disconnected",
                    "code": code,
                    "reason": reason,
                    "reconnecting": reconnecting,
                }
            )
        case Reconnected(session=session, node=node, rooms=rooms, failed=failed):
            return msgspec.json.encode(
                {
                    "type": "reconnected",
                    "session": session,
                    "node": node,
                    "rooms": list(rooms),
                    "failed": {room: error.code for room, error in failed.items()},
                }
            )
        case Gap(room=room, epoch=epoch, after_offset=after, last_offset=last, dropped=dropped):
            return msgspec.json.encode(
                {
                    "type": "gap",
                    "room": room,
                    "epoch": epoch,
                    "after_offset": after,
                    "last_offset": last,
                    "dropped": dropped,
                }
            )
        case _:
            assert_never(event)


def error_label(error: ClientError) -> str:
    """``CODE: message`` for stderr: the broker's code, or the SDK's kind of failure.

    A handshake the broker refused (401, 403) reads ``refused (STATUS): REASON``,
    with the broker's own reason.
    """
    if isinstance(error, BrokerError):
        return f"{error.code}: {error.message}"
    if isinstance(error, ConnectFailed) and error.status is not None:
        return f"refused ({error.status}): {error.reason or 'no reason given'}"
    kinds: dict[type[ClientError], str] = {
        RequestTimeout: "timeout",
        ConnectFailed: "connect_failed",
        ConnectionLost: "connection_lost",
        ClientClosed: "closed",
    }
    return f"{kinds.get(type(error), 'client_error')}: {error}"


class _Out:
    """stdout, one flushed line per event; a closed pipe ends output quietly."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.open = True

    def write(self, event: Event) -> None:
        if not self.open:
            return
        line = event_json(event) if self.as_json else describe(event).encode()
        try:
            sys.stdout.buffer.write(line + b"\n")
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader is gone (`| head`): stop writing, and keep the
            # interpreter's final flush from failing again.
            self.open = False
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def refusal_hint(error: ClientError, *, token_given: bool) -> str | None:
    """What fixes a handshake the broker refused, or ``None`` for other errors.

    Args:
        error: the failure.
        token_given: whether the tool presented a token.
    """
    if not isinstance(error, ConnectFailed) or error.status is None:
        return None
    if error.status == 401 and not token_given:
        return "pass --token or set BROKER_TOKEN"
    if error.status == 401:
        return "pass a valid, unexpired token with --token or BROKER_TOKEN"
    # 403 is about the client, not its token (an origin not allowed, say).
    return "the broker does not admit this client; ask its operator"


def _fail(
    tool: str, error: ClientError, code: int = EXIT_REFUSED, *, token_given: bool = False
) -> int:
    hint = refusal_hint(error, token_given=token_given)
    line = error_label(error) if hint is None else f"{error_label(error)}; {hint}"
    print(f"broker {tool}: {line}", file=sys.stderr, flush=True)
    return code


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def _print_events(client: Client, out: _Out) -> None:
    async for event in client:
        out.write(event)


async def _until_stopped(tool: str, work: asyncio.Task[Any], stop: asyncio.Event) -> int:
    """Run ``work`` until it ends or ``stop`` is set; the exit code."""
    stopping = asyncio.get_running_loop().create_task(stop.wait())
    try:
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work, stopping):
            task.cancel()
        await asyncio.gather(work, stopping, return_exceptions=True)
    if not work.cancelled():
        try:
            work.result()
        except ClientError as error:
            return _fail(tool, error, EXIT_ENDED)
    return EXIT_OK


def _quiet_logging() -> None:
    # The SDK's warnings (dropped events) matter to a user; its info does not.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")


# --- say ---------------------------------------------------------------------


def parse_body(text: str) -> Any:
    """``text`` as JSON if it is valid JSON (kept as given), else the string itself."""
    try:
        msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text
    return msgspec.Raw(text.encode())


def _one_shot(args: argparse.Namespace) -> contextlib.AbstractAsyncContextManager[Client]:
    # say and who: one connection, no reconnect, the tool's timeout for all.
    return connect(
        args.url,
        token=args.token,
        reconnect=False,
        request_timeout=args.timeout,
        open_timeout=args.timeout,
    )


async def say(args: argparse.Namespace) -> int:
    """``broker say URL ROOM BODY``; returns the exit code."""
    _quiet_logging()
    try:
        async with _one_shot(args) as client:
            await client.join(args.room)
            await client.say(args.room, parse_body(args.body))
    except ClientError as error:
        return _fail("say", error, token_given=args.token is not None)
    return EXIT_OK


# --- who ---------------------------------------------------------------------


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def presence_lines(presence: RoomPresence, asker: str) -> list[str]:
    """What ``broker who`` prints: one ``SESSION USER`` line per member listed
    (``-`` for an anonymous session), then the counts.

    Args:
        presence: the broker's reply.
        asker: the tool's own session, which the counts include (only a
            member may ask: docs/HISTORY-PRESENCE.md, "Presence").
    """
    lines = [f"{m.session} {'-' if m.user is None else m.user}" for m in presence.members]
    listed = f"{len(presence.members)} listed; " if presence.truncated else ""
    lines.append(
        f"{_counted(presence.count, 'session')}, {_counted(presence.users, 'user')} "
        f"({listed}this tool's session {asker} included)"
    )
    return lines


def presence_json(presence: RoomPresence) -> bytes:
    """The reply as JSON, exactly as ``GET /rooms/{room}/presence`` answers it
    (the same encoder): the wire reply without ``type`` and ``ref``."""
    return encode_presence(
        presence.room,
        presence.count,
        presence.users,
        presence.members,
        presence.truncated,
        http=True,
    )


async def who(args: argparse.Namespace) -> int:
    """``broker who URL ROOM [--json]``; returns the exit code."""
    _quiet_logging()
    try:
        async with _one_shot(args) as client:
            await client.join(args.room)
            presence = await client.presence(args.room)
            asker = client.session
    except ClientError as error:
        return _fail("who", error, token_given=args.token is not None)
    if args.json:
        sys.stdout.buffer.write(presence_json(presence) + b"\n")
    else:
        sys.stdout.write("".join(line + "\n" for line in presence_lines(presence, asker)))
    sys.stdout.flush()
    return EXIT_OK


# --- listen ------------------------------------------------------------------


async def _joined_client(
    tool: str, url: str, rooms: Sequence[str], token: str | None
) -> Client | int:
    """An open client in every room, or the exit code of the failure."""
    try:
        client = await connect(url, token=token)
    except ClientError as error:
        return _fail(tool, error, token_given=token is not None)
    try:
        for room in rooms:
            await client.join(room)
    except ClientError as error:
        await client.close()
        return _fail(tool, error)
    return client


async def listen(args: argparse.Namespace) -> int:
    """``broker listen URL ROOM... [--json]``; returns the exit code."""
    _quiet_logging()
    stop = _stop_on_signals()
    client = await _joined_client("listen", args.url, args.rooms, args.token)
    if isinstance(client, int):
        return client
    async with client:
        print(
            f"broker listen: in {', '.join(args.rooms)} as {client.session} on {client.node}",
            file=sys.stderr,
            flush=True,
        )
        printing = asyncio.get_running_loop().create_task(_print_events(client, _Out(args.json)))
        return await _until_stopped("listen", printing, stop)


# --- chat --------------------------------------------------------------------


async def _stdin_lines() -> AsyncIterator[str]:
    """Lines of stdin, without their line ending, until EOF.

    A daemon thread reads, so that a terminal, a pipe and a file all work and
    a pending read never delays exit.
    """
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def forward(line: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: we are exiting
            loop.call_soon_threadsafe(lines.put_nowait, line)

    def read() -> None:
        for line in sys.stdin:
            forward(line.rstrip("\r\n"))
        forward(None)

    threading.Thread(target=read, name="stdin", daemon=True).start()
    while (line := await lines.get()) is not None:
        yield line


async def _say_lines(client: Client, room: str, name: str | None) -> None:
    async for line in _stdin_lines():
        if not line:
            continue
        body = {"text": line} if name is None else {"text": line, "name": name}
        try:
            await client.say(room, body)
        except (BrokerError, RequestTimeout, ConnectionLost) as error:
            print(f"! not sent: {error_label(error)}", file=sys.stderr, flush=True)


async def chat(args: argparse.Namespace) -> int:
    """``broker chat URL [--room ROOM] [--name NAME]``; returns the exit code."""
    _quiet_logging()
    stop = _stop_on_signals()
    client = await _joined_client("chat", args.url, [args.room], args.token)
    if isinstance(client, int):
        return client
    async with client:
        print(
            f"* in {args.room} as {client.session} on {client.node}; Ctrl-D leaves",
            file=sys.stderr,
            flush=True,
        )
        loop = asyncio.get_running_loop()
        printing = loop.create_task(_print_events(client, _Out(as_json=False)))
        typing = loop.create_task(_say_lines(client, args.room, args.name))
        code = await _until_stopped("chat", _first_of(printing, typing), stop)
        if code == EXIT_OK:
            with contextlib.suppress(ClientError):
                await client.leave(args.room, timeout=2.0)
        return code


def _first_of(*tasks: asyncio.Task[None]) -> asyncio.Task[None]:
    """A task that ends with the first of ``tasks`` (its error too), cancelling the rest."""

    async def first() -> None:
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    return asyncio.get_running_loop().create_task(first())
