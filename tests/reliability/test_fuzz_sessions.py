"""Property-based fuzzing of whole sessions against one real node: whatever a
client sends (valid requests, garbage, binary or oversize frames), it gets
only contract replies, every request with a ``ref`` gets exactly one, the
node stays up, and the other members of a room miss nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from protocol import ErrorCode
from tests.support.processes import BrokerProcess
from tests.support.wire import WireClient

MAX_MESSAGE_SIZE = 65536  # the default
WATCHED = "watched"
ERROR_CODES = {code.value for code in ErrorCode}
SERVER_TYPES = {"welcome", "ok", "error", "pong", "message", "joined", "left"}
REPLY_SECONDS = 5.0


@pytest.fixture(scope="module")
def node() -> Iterator[BrokerProcess]:
    """One node for the whole module (every example talks to the same one)."""
    started = BrokerProcess(args=("--idle-timeout", "0")).start()
    yield started
    started.cleanup()


@dataclass(frozen=True)
class Frame:
    """One frame the fuzz client sends, and what it must cause.

    Attributes:
        data: the frame (str: text frame, bytes: binary frame).
        ref: a ref used by this frame only, if it must get exactly one reply.
        closes: the close code it must cause, if any.
    """

    data: str | bytes
    ref: str | None = None
    closes: int | None = None


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    # JSON has no Infinity or NaN (json.dumps would write them anyway).
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
rooms = st.sampled_from([WATCHED, "fuzz", "other.room", "", "bad room!", "x" * 129]) | st.text(
    max_size=10
)


@st.composite
def requests(draw: st.DrawFn, index: int) -> Frame:
    """A request, valid or not in its fields, with a ref of its own or none."""
    request: dict[str, Any] = {
        "type": draw(st.sampled_from(["join", "leave", "say", "ping", "joined", "nope"]))
    }
    if draw(st.booleans()):
        request["room"] = draw(rooms)
    if draw(st.booleans()):
        request["body"] = draw(json_values)
    if draw(st.booleans()):
        request["extra"] = draw(json_values)
    ref = f"u{index}" if draw(st.booleans()) else None
    if ref is not None:
        request["ref"] = ref
    return Frame(json.dumps(request), ref=ref)


garbage = st.one_of(
    st.text(max_size=60),
    st.sampled_from(['{"type":"say"', "[]", "null", '{"type":1}', "{}", '"join"']),
).map(Frame)
binary = st.binary(max_size=32).map(lambda data: Frame(data, closes=1003))
oversize = st.just(Frame('{"type":"ping","pad":"' + "x" * MAX_MESSAGE_SIZE + '"}', closes=1009))


@st.composite
def sessions(draw: st.DrawFn) -> list[Frame]:
    """Up to 12 frames; a frame that closes the connection comes last."""
    frames = [
        draw(st.one_of(requests(index), garbage)) for index in range(draw(st.integers(0, 12)))
    ]
    if draw(st.integers(0, 4)) == 0:
        frames.append(draw(binary | oversize))
    return frames


class FuzzClient:
    """A raw connection that records every frame the node sends."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                assert isinstance(raw, str), raw
                self.received.append(json.loads(raw))
                self.arrived.set()
        except ConnectionClosed:
            pass

    def replies_to(self, ref: str) -> list[dict[str, Any]]:
        return [
            f for f in self.received if f["type"] in {"ok", "error", "pong"} and f["ref"] == ref
        ]

    async def wait_replies(self, refs: list[str]) -> None:
        """Wait until every ref got a reply (bounded)."""
        async with asyncio.timeout(REPLY_SECONDS):
            while not all(self.replies_to(ref) for ref in refs):
                self.arrived.clear()
                await self.arrived.wait()

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


async def run_session(node: BrokerProcess, frames: list[Frame]) -> None:
    observer = await WireClient.open(node.url)
    sayer = await WireClient.open(node.url)
    fuzz = FuzzClient(await connect(node.url, ping_interval=None, max_size=None))
    try:
        await observer.join(WATCHED)
        await sayer.join(WATCHED)
        for n, frame in enumerate(frames):
            await fuzz.ws.send(frame.data)
            await sayer.say(WATCHED, n)  # the steady say beside the fuzz
        closes = frames[-1].closes if frames else None
        if closes is None:
            await fuzz.ws.send(json.dumps({"type": "ping", "ref": "end"}))
            await fuzz.wait_replies([f.ref for f in frames if f.ref] + ["end"])
        else:
            await asyncio.wait_for(fuzz.ws.wait_closed(), REPLY_SECONDS)

        check_replies(fuzz, frames)
        assert fuzz.ws.close_code == closes  # None: still open
        said: list[Any] = []
        while len(said) < len(frames):
            event = await observer.next_event()
            if event["type"] == "message" and event["from"] == sayer.session:
                said.append(event["body"])
        assert said == list(range(len(frames)))
    finally:
        await fuzz.close()
        await sayer.close()
        await observer.close()


def check_replies(fuzz: FuzzClient, frames: list[Frame]) -> None:
    """Only contract frames, and one reply per ref."""
    assert fuzz.received[0]["type"] == "welcome"
    for received in fuzz.received:
        assert received["type"] in SERVER_TYPES, received
        if received["type"] == "error":
            assert received["code"] in ERROR_CODES, received
    for frame in frames:
        if frame.ref is not None:
            assert len(fuzz.replies_to(frame.ref)) == 1, (frame, fuzz.received)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frames=sessions())
def test_any_session_gets_contract_replies_and_spares_the_room(
    node: BrokerProcess, frames: list[Frame]
) -> None:
    asyncio.run(run_session(node, frames))

    assert node.health()[0] == 200


async def test_deeply_nested_say_body_gets_an_error_and_the_connection_stays_open(
    node: BrokerProcess,
) -> None:
    """Before the fix in protocol/codec.py the ``RecursionError`` escaped the
    decoder and the node dropped this client (1006) without a reply."""
    client = await WireClient.open(node.url)
    try:
        await client.join("deep")
        nested = "[" * 10_000 + "]" * 10_000  # 20 KB, well under the frame limit
        await client.send_raw('{"type":"say","room":"deep","body":' + nested + ',"ref":"deep"}')

        reply = await reply_or_close(client)

        assert reply["type"] == "error" and reply["code"] in {"bad_json", "bad_message"}, reply
        assert (await client.request("ping"))["type"] == "pong"
    finally:
        await client.close()


async def reply_or_close(client: WireClient) -> dict[str, Any]:
    """The next event of ``client``; fails at once if the node closes it instead."""
    event = asyncio.create_task(client.next_event(timeout=REPLY_SECONDS))
    closed = asyncio.create_task(client.ws.wait_closed())
    await asyncio.wait({event, closed}, return_when=asyncio.FIRST_COMPLETED)
    closed.cancel()
    if not event.done():
        event.cancel()
        await asyncio.gather(event, return_exceptions=True)
        raise AssertionError(f"the node closed the connection: code {client.ws.close_code}")
    return event.result()
