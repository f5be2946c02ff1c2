"""Property-based fuzzing of the HTTP edge (broker/edge.py, broker/http.py,
broker/handshake.py): whatever bytes a client sends, however they are
segmented, the node answers with an HTTP status and closes, opens a
WebSocket, or waits for the rest of a head that can still be valid (the
handshake timeout bounds that wait). It never raises and never hangs on
bytes that cannot be HTTP."""

from __future__ import annotations

import asyncio
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.edge import Edge, read_head
from broker.http import HttpExchange
from broker.http_answer import HttpAnswer
from broker.link import WireSettings
from broker.wire import Wire
from tests.support.fakes import (
    HANDSHAKE,
    FakeEdgeApp,
    FakeRegistry,
    FakeTransport,
    connect,
    next_turn,
)

FUZZ = settings(max_examples=300, deadline=None)

methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "OPTIONS", "get", "G ET", ""])
targets = st.sampled_from(["/ws", "/healthz", "/publish", "/", "*", "/ws?token=x", "", "/a b"])
versions = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/1.1 ", "http/1.1"])
header_names = st.sampled_from(
    [
        "Host",
        "Upgrade",
        "Connection",
        "Content-Length",
        "Transfer-Encoding",
        "Expect",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "X-Any",
        "Bad Name",
        "",
    ]
)
header_values = st.sampled_from(
    ["websocket", "Upgrade", "13", "8", "5", "+5", "2_5", "-1", "chunked", "gzip", "100-continue"]
) | st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=20)
headers = st.lists(st.tuples(header_names, header_values), max_size=8)
bodies = st.binary(max_size=64) | st.just(b"5\r\nhello\r\n0\r\n\r\n")


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """Something close to an HTTP request, often wrong in one detail."""
    line = f"{draw(methods)} {draw(targets)} {draw(versions)}"
    fields = "".join(f"{name}: {value}\r\n" for name, value in draw(headers))
    return (line + "\r\n" + fields + "\r\n").encode("latin-1") + draw(bodies)


async def feed(chunks: list[bytes]) -> tuple[FakeTransport, bytes]:
    """Feed ``chunks`` to a fresh edge; return its transport and all bytes sent."""
    transport = FakeTransport()
    settings_ = WireSettings(1024, handshake_timeout=10.0, close_timeout=1.0, compression=False)
    connect(Edge(FakeEdgeApp(), settings_, FakeRegistry()), transport)
    for chunk in chunks:
        if transport.closing:
            break
        protocol = transport.get_protocol()
        assert isinstance(protocol, asyncio.Protocol)
        protocol.data_received(chunk)
    for _ in range(3):  # let a body reader answer
        await next_turn()
    return transport, b"".join(chunks)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (positions past its end are ignored)."""
    points = sorted({0, len(data), *(cut for cut in cuts if cut < len(data))})
    return [data[a:b] for a, b in itertools.pairwise(points)] or [b""]


def assert_answered_or_waiting(transport: FakeTransport, data: bytes) -> None:
    # An exception in the edge or the HTTP handler aborts the connection.
    assert not transport.aborted, "the edge raised"
    protocol = transport.get_protocol()
    if transport.closing:
        assert transport.data.startswith(b"HTTP/1.1 "), transport.data[:80]
        status = int(transport.data[9:12])
        assert 100 <= status <= 599
    elif isinstance(protocol, Edge):
        # Still reading a head: only bytes that can still become one.
        assert read_head(data) is None, data[:80]
    else:
        assert isinstance(protocol, Wire | HttpExchange), protocol


@FUZZ
@given(st.binary(max_size=4096))
def test_read_head_never_raises_and_answers_only_400_or_431(data: bytes) -> None:
    verdict = read_head(data)
    if isinstance(verdict, HttpAnswer):
        assert verdict.status in (400, 431)


@FUZZ
@given(st.binary(max_size=2048), st.lists(st.integers(0, 2048), max_size=4))
def test_any_bytes_get_an_answer_or_wait_for_a_valid_head(data: bytes, cuts: list[int]) -> None:
    transport, sent = asyncio.run(feed(split(data, cuts)))
    assert_answered_or_waiting(transport, sent)


@FUZZ
@given(requests(), st.lists(st.integers(0, 512), max_size=4))
def test_near_http_requests_get_an_answer_or_wait(data: bytes, cuts: list[int]) -> None:
    transport, sent = asyncio.run(feed(split(data, cuts)))
    assert_answered_or_waiting(transport, sent)


@FUZZ
@given(st.binary(max_size=512))
def test_bytes_after_a_valid_handshake_never_break_the_node(data: bytes) -> None:
    transport, _ = asyncio.run(feed([HANDSHAKE, data]))
    assert not transport.aborted, "the wire raised"
