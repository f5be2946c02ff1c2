"""broker.edge: one look at the request head, one limit on it, and the
handover to the WebSocket handshake or the HTTP handler; fed bytes over a
fake transport."""

from __future__ import annotations

import asyncio
import json

import pytest

from broker.edge import MAX_HEAD, Edge, Head, read_head
from broker.http import HttpExchange
from broker.http_answer import HttpAnswer, error_answer
from broker.link import WireSettings
from broker.wire import Wire
from protocol import ErrorCode
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


class Harness:
    """An :class:`Edge` on a fake transport, with a recording app."""

    def __init__(self, handshake_timeout: float = 10.0, app: FakeEdgeApp | None = None) -> None:
        self.app = app or FakeEdgeApp()
        self.registry = FakeRegistry()
        self.transport = FakeTransport()
        settings = WireSettings(1024, handshake_timeout, 1.0, compression=False)
        self.edge = Edge(self.app, settings, self.registry)
        connect(self.edge, self.transport)

    def feed(self, data: bytes) -> None:
        """Bytes arrive from the client, to whatever protocol holds the transport."""
        protocol = self.transport.get_protocol()
        assert isinstance(protocol, asyncio.Protocol)
        protocol.data_received(data)

    def status(self) -> int:
        """The status of the answer written."""
        return int(self.transport.data.split(b" ", 2)[1])

    def body(self) -> object:
        """The JSON body of the answer written."""
        return json.loads(self.transport.data.partition(b"\r\n\r\n")[2])


@pytest.fixture
async def harness() -> Harness:
    return Harness()


# --- read_head -------------------------------------------------------------------


def test_a_partial_request_line_needs_more() -> None:
    assert read_head(b"GET /he") is None


def test_a_complete_head_gives_method_path_and_size() -> None:
    head = b"GET /healthz?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"
    assert read_head(head + b"extra") == Head(len(head), "GET", "/healthz", upgrade=False)


def test_an_upgrade_header_naming_websocket_is_seen() -> None:
    verdict = read_head(HANDSHAKE)
    assert isinstance(verdict, Head)
    assert verdict.upgrade


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(bytes.fromhex("16030100f4010000f00303"), id="tls-client-hello"),
        pytest.param(b"\x00\x01\x02", id="binary"),
        pytest.param(b"get / HTTP/1.1\r\n", id="lowercase-method"),
        pytest.param(b"GET / HTTP/2.0\r\n", id="http2"),
        pytest.param(b"GET  / HTTP/1.1", id="two-spaces"),
        pytest.param(b"GET / XTTP", id="bad-version-prefix"),
        pytest.param(b"GET /a\nb HTTP/1.1", id="bare-lf-in-target"),
        pytest.param(b"A" * 21, id="method-too-long"),
    ],
)
def test_bytes_that_cannot_start_a_request_are_400(data: bytes) -> None:
    verdict = read_head(data)
    assert isinstance(verdict, HttpAnswer)
    assert verdict.status == 400


def test_a_head_over_the_limit_in_one_piece_is_431() -> None:
    head = b"GET /ws HTTP/1.1\r\n" + b"X: " + b"a" * MAX_HEAD + b"\r\n\r\n"
    verdict = read_head(head)
    assert isinstance(verdict, HttpAnswer)
    assert verdict.status == 431


def test_an_unfinished_head_over_the_limit_is_431() -> None:
    verdict = read_head(b"GET /ws HTTP/1.1\r\n" + b"X: " + b"a" * MAX_HEAD)
    assert isinstance(verdict, HttpAnswer)
    assert verdict.status == 431


def test_a_head_of_exactly_the_limit_is_read() -> None:
    start = b"GET / HTTP/1.1\r\nX: "
    head = start + b"a" * (MAX_HEAD - len(start) - 4) + b"\r\n\r\n"
    assert len(head) == MAX_HEAD
    assert isinstance(read_head(head), Head)


def test_a_request_line_without_a_line_end_over_the_limit_is_431() -> None:
    verdict = read_head(b"GET /" + b"a" * MAX_HEAD)
    assert isinstance(verdict, HttpAnswer)
    assert verdict.status == 431


# --- Edge: routing ----------------------------------------------------------------


async def test_a_websocket_upgrade_opens_a_wire(harness: Harness) -> None:
    harness.feed(HANDSHAKE)
    assert harness.transport.data.startswith(b"HTTP/1.1 101")
    assert isinstance(harness.transport.get_protocol(), Wire)
    assert len(harness.app.handlers) == 1


async def test_frames_sent_with_the_head_reach_the_session(harness: Harness) -> None:
    harness.feed(HANDSHAKE + client_frame(0x1, b"hello"))
    assert harness.app.handlers[0].messages == [b"hello"]


async def test_a_head_split_anywhere_is_read_the_same(harness: Harness) -> None:
    for byte in HANDSHAKE:
        harness.feed(bytes((byte,)))
    assert isinstance(harness.transport.get_protocol(), Wire)


async def test_a_plain_request_goes_to_the_http_handler(harness: Harness) -> None:
    harness.feed(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [r.path for r in harness.app.requests] == ["/healthz"]
    assert harness.status() == 200


async def test_an_upgrade_to_another_path_is_a_plain_request(harness: Harness) -> None:
    harness.feed(HANDSHAKE.replace(b"/ws", b"/elsewhere"))
    assert [r.path for r in harness.app.requests] == ["/elsewhere"]
    assert harness.app.handlers == []


async def test_a_post_body_after_the_head_is_read_by_the_http_handler(harness: Harness) -> None:
    harness.feed(b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nab")
    assert isinstance(harness.transport.get_protocol(), HttpExchange)
    harness.feed(b"c")
    await next_turn()
    assert harness.app.bodies == [b"abc"]
    assert harness.status() == 202


async def test_garbage_is_answered_400_and_closed_at_once(harness: Harness) -> None:
    harness.feed(bytes.fromhex("16030100f4010000f00303"))
    assert harness.status() == 400
    assert harness.body() == {"error": "bad_request", "message": "not an HTTP/1.1 request"}
    assert harness.transport.closing


async def test_an_oversized_head_is_431_and_never_upgraded(harness: Harness) -> None:
    filler = b"".join(b"X-%d: %s\r\n" % (n, b"a" * 2000) for n in range(50))
    harness.feed(HANDSHAKE[:-2] + filler + b"\r\n")
    assert harness.status() == 431
    assert harness.app.handlers == []
    assert harness.app.targets == []


# --- Edge: lifecycle --------------------------------------------------------------


async def test_the_edge_is_registered_until_it_hands_over(harness: Harness) -> None:
    assert harness.registry.links == {harness.edge}
    harness.feed(HANDSHAKE)
    wire = harness.transport.get_protocol()
    assert isinstance(wire, Wire)
    assert harness.registry.links == {wire}


async def test_a_client_silent_past_the_handshake_timeout_is_dropped() -> None:
    harness = Harness(handshake_timeout=0.01)
    harness.feed(b"GET /ws HTTP/1.1\r\n")
    await asyncio.sleep(0.05)  # the timeout itself is what is tested
    assert harness.transport.aborted


async def test_a_lost_connection_leaves_the_registry(harness: Harness) -> None:
    harness.transport.abort()
    await next_turn()
    assert harness.registry.links == set()


async def test_a_failing_session_costs_only_its_connection() -> None:
    class Broken(FakeEdgeApp):
        def _open(self, wire: Wire) -> RecordingHandler:
            raise RuntimeError("a bug in the application")

    harness = Harness(app=Broken())
    harness.feed(HANDSHAKE)
    assert harness.transport.aborted
    await next_turn()
    assert harness.registry.links == set()


async def test_a_refused_handshake_is_answered_and_the_edge_leaves_on_close(
    harness: Harness,
) -> None:
    harness.app.refusal = error_answer(403, ErrorCode.FORBIDDEN, "no", with_reason=True)
    harness.feed(HANDSHAKE)
    assert harness.status() == 403
    assert harness.body() == {"error": "forbidden", "message": "no", "reason": "no"}
    await next_turn()
    assert harness.registry.links == set()
