"""broker.wire: the WebSocket driver fed bytes over a fake transport whose
peer reads nothing until told to: messages, reassembly, UTF-8, close codes,
and back-pressure (every byte written counts against the client's limits)."""

from __future__ import annotations

import asyncio
import struct

import pytest

from broker.edge import Edge
from broker.link import WireSettings
from broker.outbox import SlowConsumerPolicy
from broker.wire import Wire
from tests.support.fakes import (
    HANDSHAKE,
    FakeEdgeApp,
    FakeRegistry,
    FakeTransport,
    RecordingHandler,
    client_frame,
    connect,
    next_turn,
)

MAX_SIZE = 1024
GRACE = 0.05
POLICY = SlowConsumerPolicy(high_water=1000, grace=GRACE, hard_limit=5000)
PING = client_frame(0x9, b"q" * 125)
TEXT, BINARY, CLOSE, PONG = 0x1, 0x2, 0x8, 0xA


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """``(opcode, payload)`` of each unmasked frame in ``data``."""
    frames = []
    while data:
        opcode, length = data[0] & 0x0F, data[1] & 0x7F
        start = 2
        if length == 126:
            length, start = struct.unpack("!H", data[2:4])[0], 4
        frames.append((opcode, data[start : start + length]))
        data = data[start + length :]
    return frames


class Harness:
    """One open WebSocket on a fake transport."""

    def __init__(self) -> None:
        self.app = FakeEdgeApp()
        self.registry = FakeRegistry()
        self.transport = FakeTransport()
        settings = WireSettings(MAX_SIZE, 10.0, 0.05, compression=False, slow_consumer=POLICY)
        connect(Edge(self.app, settings, self.registry), self.transport)
        self.feed(HANDSHAKE)
        self.opened = len(self.transport.data)
        wire = self.transport.get_protocol()
        assert isinstance(wire, Wire)
        self.wire = wire
        self.handler: RecordingHandler = self.app.handlers[0]

    def feed(self, data: bytes) -> None:
        protocol = self.transport.get_protocol()
        assert isinstance(protocol, asyncio.Protocol)
        protocol.data_received(data)

    def sent(self) -> list[tuple[int, bytes]]:
        """Frames written since the handshake."""
        return server_frames(self.transport.data[self.opened :])

    def close_code(self) -> int:
        """The code of the close frame written."""
        closes = [payload for opcode, payload in self.sent() if opcode == CLOSE]
        assert len(closes) == 1, self.sent()
        return int(struct.unpack("!H", closes[0][:2])[0])


@pytest.fixture
async def harness() -> Harness:
    return Harness()


# --- messages --------------------------------------------------------------------


async def test_a_text_message_reaches_the_handler(harness: Harness) -> None:
    harness.feed(client_frame(TEXT, b'{"type":"ping"}'))
    assert harness.handler.messages == [b'{"type":"ping"}']


async def test_fragments_are_reassembled_into_one_message(harness: Harness) -> None:
    harness.feed(client_frame(TEXT, b"he", fin=False) + client_frame(0x0, b"llo"))
    assert harness.handler.messages == [b"hello"]


async def test_invalid_utf8_closes_with_1007(harness: Harness) -> None:
    harness.feed(client_frame(TEXT, b"\xff\xfe"))
    assert harness.handler.messages == []
    assert harness.close_code() == 1007


async def test_a_binary_frame_closes_with_1003_and_nothing_after_it_is_handled(
    harness: Harness,
) -> None:
    harness.feed(client_frame(BINARY, b"\x00") + client_frame(TEXT, b"later"))
    assert harness.handler.messages == []
    assert harness.close_code() == 1003


async def test_fragments_over_the_size_limit_close_with_1009(harness: Harness) -> None:
    half = b"x" * (MAX_SIZE // 2 + 1)
    harness.feed(client_frame(TEXT, half, fin=False) + client_frame(0x0, half))
    assert harness.handler.messages == []
    assert harness.close_code() == 1009


async def test_a_ping_is_answered_with_a_pong(harness: Harness) -> None:
    harness.feed(client_frame(0x9, b"hi"))
    assert harness.sent() == [(PONG, b"hi")]


# --- back-pressure -----------------------------------------------------------------


async def test_reading_stops_while_the_write_buffer_is_above_high_water(
    harness: Harness,
) -> None:
    harness.feed(PING * 8)  # 8 pongs of 127 bytes: past the 1000-byte mark
    assert not harness.transport.reading
    harness.transport.drain()
    assert harness.transport.reading


async def test_reading_resumes_only_when_both_the_app_and_the_buffer_allow(
    harness: Harness,
) -> None:
    harness.wire.pause_reading()
    harness.feed(PING * 8)
    harness.transport.drain()
    assert not harness.transport.reading  # the application still holds it
    harness.wire.resume_reading()
    assert harness.transport.reading


async def test_pongs_past_the_hard_limit_cut_the_client_off_with_1013(harness: Harness) -> None:
    harness.feed(PING * 50)  # 6350 bytes of pongs against a 5000-byte limit
    assert harness.transport.buffered <= POLICY.hard_limit + 4 + len("slow consumer")
    assert len(harness.handler.slow) == 1
    assert harness.close_code() == 1013
    assert harness.sent()[-1][0] == CLOSE  # no pong after the close frame


async def test_a_client_slow_past_the_grace_is_cut_off(harness: Harness) -> None:
    harness.feed(PING * 8)
    await asyncio.sleep(GRACE * 4)  # the grace period itself is what is tested
    assert len(harness.handler.slow) == 1
    assert harness.close_code() == 1013


async def test_a_client_that_catches_up_within_the_grace_is_not_cut_off(
    harness: Harness,
) -> None:
    harness.feed(PING * 8)
    harness.transport.drain()
    await asyncio.sleep(GRACE * 4)
    assert harness.handler.slow == []


# --- closing -----------------------------------------------------------------------


async def test_the_close_code_the_node_sent_is_reported(harness: Harness) -> None:
    harness.wire.close(1008, "token expired")
    harness.transport.abort()
    await next_turn()
    assert (harness.wire.close_code, harness.wire.close_reason) == (1008, "token expired")


async def test_the_close_code_the_client_sent_is_reported(harness: Harness) -> None:
    harness.feed(client_frame(CLOSE, struct.pack("!H", 1000) + b"bye"))
    await next_turn()
    assert (harness.wire.close_code, harness.wire.close_reason) == (1000, "bye")


async def test_a_connection_dropped_without_a_close_frame_reports_1006(
    harness: Harness,
) -> None:
    harness.transport.abort()
    await next_turn()
    assert (harness.wire.close_code, harness.wire.close_reason) == (1006, "")


async def test_the_handler_is_told_of_the_end_exactly_once(harness: Harness) -> None:
    harness.wire.close(1000)
    harness.transport.abort()
    await next_turn()
    harness.transport.abort()
    await next_turn()
    assert harness.handler.closed_calls == 1
    assert harness.registry.links == set()


async def test_a_close_that_is_never_answered_is_aborted(harness: Harness) -> None:
    harness.wire.close(1001, "going away")
    await asyncio.sleep(0.2)  # the close timeout (0.05 s) itself is what is tested
    assert harness.transport.aborted


# --- keepalive ---------------------------------------------------------------------


async def test_a_keepalive_ping_is_sent_and_any_data_answers_it(harness: Harness) -> None:
    harness.wire.ping()
    assert harness.sent() == [(0x9, b"")]
    assert harness.wire.ping_sent
    harness.feed(client_frame(TEXT, b"x"))
    assert harness.wire.ping_sent == 0.0
