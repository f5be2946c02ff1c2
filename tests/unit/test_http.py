"""broker.http: plain HTTP on h11, fed bytes over a fake transport: framing
(Content-Length digits only, chunked bodies), limits, ``Expect``, ``HEAD``,
and the one JSON error body."""

from __future__ import annotations

import asyncio
import json

import pytest

from broker.http import BodyReader, HttpExchange, RequestHead
from broker.http_answer import HttpAnswer, json_answer
from tests.support.fakes import FakeEdgeApp, FakeRegistry, FakeTransport, next_turn

MAX_BODY = 64


class Harness:
    """An exchange on a fake transport, as the edge hands it over."""

    def __init__(self, app: FakeEdgeApp | None = None) -> None:
        self.app = app or FakeEdgeApp()
        self.registry = FakeRegistry()
        self.transport = FakeTransport()
        deadline = asyncio.get_running_loop().time() + 10
        self.exchange = HttpExchange(
            self.app, self.registry, self.transport, "peer", MAX_BODY, deadline
        )

    def status(self) -> int:
        return int(self.transport.data.split(b" ", 2)[1])

    def headers(self) -> dict[str, str]:
        head = self.transport.data.partition(b"\r\n\r\n")[0].decode("latin-1")
        pairs = (line.partition(":") for line in head.split("\r\n")[1:])
        return {name.lower(): value.strip() for name, _, value in pairs}

    def body(self) -> bytes:
        return self.transport.data.partition(b"\r\n\r\n")[2]

    def error(self) -> str:
        return str(json.loads(self.body())["error"])


@pytest.fixture
async def harness() -> Harness:
    return Harness()


def post(*headers: bytes) -> bytes:
    return (
        b"POST /publish HTTP/1.1\r\nHost: x\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"
    )


async def test_a_get_is_answered_and_the_connection_closed(harness: Harness) -> None:
    harness.exchange.receive(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (harness.status(), harness.body()) == (200, b"ok")
    assert harness.headers()["connection"] == "close"
    assert harness.transport.closing


async def test_head_gets_the_get_answer_without_its_body(harness: Harness) -> None:
    harness.exchange.receive(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert harness.status() == 200
    assert harness.headers()["content-length"] == "2"
    assert harness.body() == b""


async def test_a_body_with_content_length_is_read_whole(harness: Harness) -> None:
    harness.exchange.receive(post(b"Content-Length: 5") + b"he")
    harness.exchange.data_received(b"llo")
    await next_turn()
    assert harness.app.bodies == [b"hello"]
    assert harness.status() == 202


async def test_a_chunked_body_is_decoded(harness: Harness) -> None:
    harness.exchange.receive(
        post(b"Transfer-Encoding: chunked") + b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"
    )
    await next_turn()
    assert harness.app.bodies == [b"hello"]


async def test_a_chunked_body_over_the_limit_is_413_before_it_ends(harness: Harness) -> None:
    chunk = b"%x\r\n%s\r\n" % (MAX_BODY, b"x" * MAX_BODY)
    harness.exchange.receive(post(b"Transfer-Encoding: chunked") + chunk + chunk)
    assert (harness.status(), harness.error()) == (413, "body_too_large")
    assert harness.app.bodies == []


async def test_a_declared_length_over_the_limit_is_413_without_reading(harness: Harness) -> None:
    harness.exchange.receive(post(b"Content-Length: %d" % (MAX_BODY + 1)))
    assert (harness.status(), harness.error()) == (413, "body_too_large")


@pytest.mark.parametrize("length", [b"+5", b"5_0", b"0x5", b"5 5"])
async def test_a_content_length_that_is_not_digits_is_400(harness: Harness, length: bytes) -> None:
    harness.exchange.receive(post(b"Content-Length: " + length) + b"hello")
    assert (harness.status(), harness.error()) == (400, "bad_request")


async def test_an_unknown_transfer_coding_is_501(harness: Harness) -> None:
    harness.exchange.receive(post(b"Transfer-Encoding: gzip"))
    assert (harness.status(), harness.error()) == (501, "not_implemented")


async def test_a_request_without_host_is_400(harness: Harness) -> None:
    harness.exchange.receive(b"GET /healthz HTTP/1.1\r\n\r\n")
    assert (harness.status(), harness.error()) == (400, "bad_request")


async def test_expect_100_continue_is_answered_before_the_body(harness: Harness) -> None:
    harness.exchange.receive(post(b"Content-Length: 2", b"Expect: 100-continue"))
    assert harness.transport.data.startswith(b"HTTP/1.1 100 ")
    harness.exchange.data_received(b"hi")
    await next_turn()
    assert harness.app.bodies == [b"hi"]


async def test_reading_pauses_while_the_answer_is_computed(harness: Harness) -> None:
    harness.exchange.receive(post(b"Content-Length: 2") + b"hi")
    assert not harness.transport.reading
    await next_turn()
    assert harness.status() == 202


async def test_a_failing_handler_is_answered_500_with_the_error_shape() -> None:
    class Failing(FakeEdgeApp):
        def route(self, request: RequestHead) -> HttpAnswer | BodyReader:
            async def fail(body: bytes) -> HttpAnswer:
                raise RuntimeError("bug")

            return fail

    harness = Harness(Failing())
    harness.exchange.receive(post(b"Content-Length: 0"))
    await next_turn()
    await next_turn()
    assert (harness.status(), harness.error()) == (500, "internal")


async def test_a_lost_connection_cancels_the_answer_in_progress() -> None:
    started = asyncio.Event()

    class Slow(FakeEdgeApp):
        def route(self, request: RequestHead) -> HttpAnswer | BodyReader:
            async def wait(body: bytes) -> HttpAnswer:
                started.set()
                await asyncio.Event().wait()
                return json_answer(200, {})

            return wait

    harness = Harness(Slow())
    harness.exchange.receive(post(b"Content-Length: 0"))
    await started.wait()
    harness.transport.abort()
    await next_turn()
    await next_turn()
    assert harness.transport.writes == []
    assert harness.registry.links == set()


def test_request_head_reads_headers_case_insensitively() -> None:
    head = RequestHead("GET", "/p?q=1", [(b"authorization", b"Bearer k"), (b"x", b"1")])
    assert (head.path, head.get_all("Authorization"), head.get_all("Y")) == (
        "/p",
        ["Bearer k"],
        [],
    )
