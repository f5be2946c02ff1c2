"""Issue 11, defects 2 to 6 and the HTTP-side findings: the node's HTTP edge
answers as HTTP requires, with the one JSON error body, over raw sockets."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.security.conftest import API_KEY, MAX_SIZE
from tests.support.processes import BrokerProcess

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
UPGRADE = (
    "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {KEY}\r\n"
)


@dataclass
class Answer:
    """One HTTP response as read off the socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body, decoded."""
        return json.loads(self.body)


def exchange(port: int, request: bytes, timeout: float = 10.0) -> Answer:
    """Send ``request`` on a fresh connection and read the answer until the
    node closes the connection (every answer of the node closes it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body)


def post(path: str, body: bytes, *headers: str) -> bytes:
    """A ``POST`` with the API key and ``headers`` (no ``Content-Length`` added)."""
    lines = [f"POST {path} HTTP/1.1", "Host: x", f"Authorization: Bearer {API_KEY}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(*parts: bytes) -> bytes:
    """``parts`` in the chunked transfer coding (RFC 9112, 7.1)."""
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


@pytest.fixture(scope="module")
def plain() -> Iterator[BrokerProcess]:
    """A node without the publish API."""
    node = BrokerProcess(args=("--handshake-timeout", "60"))
    yield node.start()
    node.cleanup()


# --- defect 2: one limit on the whole head --------------------------------------


def test_an_oversized_head_in_one_read_is_431_and_never_upgraded(plain: BrokerProcess) -> None:
    headers = "".join(f"X-Filler-{n}: {'a' * 2000}\r\n" for n in range(50))
    answer = exchange(
        plain.port, (UPGRADE + "Sec-WebSocket-Version: 13\r\n" + headers + "\r\n").encode()
    )
    assert answer.status == 431
    assert answer.json()["error"] == "header_too_large"


def test_a_head_within_the_limit_still_upgrades(plain: BrokerProcess) -> None:
    headers = "".join(f"X-Filler-{n}: {'a' * 2000}\r\n" for n in range(6))
    with socket.create_connection(("127.0.0.1", plain.port), timeout=10) as sock:
        sock.sendall((UPGRADE + "Sec-WebSocket-Version: 13\r\n" + headers + "\r\n").encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 101")


# --- defect 3: HEAD -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/metrics"])
def test_head_answers_like_get_without_a_body(plain: BrokerProcess, path: str) -> None:
    answer = exchange(plain.port, f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.status == 200
    assert int(answer.headers["content-length"]) > 0
    assert answer.body == b""


def test_other_methods_on_a_read_endpoint_are_405_with_allow(plain: BrokerProcess) -> None:
    answer = exchange(plain.port, b"DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (answer.status, answer.headers["allow"]) == (405, "GET, HEAD")
    assert answer.json()["error"] == "method_not_allowed"


def test_unknown_path_is_404_with_the_json_error_shape(plain: BrokerProcess) -> None:
    answer = exchange(plain.port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.status == 404
    assert set(answer.json()) == {"error", "message"}


def test_publish_without_an_api_key_configured_says_how_to_enable_it(
    plain: BrokerProcess,
) -> None:
    answer = exchange(plain.port, post("/publish", b"{}", "Content-Length: 2"))
    assert answer.status == 404
    assert "--api-key" in answer.json()["message"]
    assert "BROKER_API_KEY" in answer.json()["message"]


# --- defects 4 and 5: the body's framing -----------------------------------------


def test_a_chunked_publish_is_accepted(secured: BrokerProcess) -> None:
    body = chunked(b'{"room":"chunky",', b'"body":"split"}')
    answer = exchange(secured.port, post("/publish", body, "Transfer-Encoding: chunked"))
    assert (answer.status, answer.json()["status"]) == (202, "accepted")


def test_a_chunked_publish_over_the_size_limit_is_413(secured: BrokerProcess) -> None:
    body = chunked(*[b"x" * 1024] * (MAX_SIZE // 1024 + 1))
    answer = exchange(secured.port, post("/publish", body, "Transfer-Encoding: chunked"))
    assert (answer.status, answer.json()["error"]) == (413, "body_too_large")


def test_an_unknown_transfer_coding_is_501(secured: BrokerProcess) -> None:
    answer = exchange(secured.port, post("/publish", b"", "Transfer-Encoding: gzip, chunked"))
    assert answer.status == 501
    assert answer.json()["error"] == "not_implemented"


@pytest.mark.parametrize("length", ["+25", "2_5", "25, 26", "-1", "0x19"])
def test_a_content_length_that_is_not_digits_is_400(secured: BrokerProcess, length: str) -> None:
    body = b'{"room":"r","body":"abc"}'
    answer = exchange(secured.port, post("/publish", body, f"Content-Length: {length}"))
    assert (answer.status, answer.json()["error"]) == (400, "bad_request")


def test_expect_100_continue_is_answered_before_the_body(secured: BrokerProcess) -> None:
    body = b'{"room":"r","body":1}'
    head = post("/publish", b"", f"Content-Length: {len(body)}", "Expect: 100-continue")
    with socket.create_connection(("127.0.0.1", secured.port), timeout=10) as sock:
        sock.sendall(head)
        assert sock.recv(4096) == b"HTTP/1.1 100 \r\n\r\n"
        sock.sendall(body)
        assert sock.recv(4096).startswith(b"HTTP/1.1 202")


# --- defect 6: handshake conformance --------------------------------------------


def test_an_unsupported_websocket_version_is_426_naming_version_13(plain: BrokerProcess) -> None:
    answer = exchange(plain.port, (UPGRADE + "Sec-WebSocket-Version: 8\r\n\r\n").encode())
    assert answer.status == 426
    assert answer.headers["sec-websocket-version"] == "13"
    assert answer.json()["error"] == "bad_request"


def test_an_upgrade_without_host_is_400(plain: BrokerProcess) -> None:
    request = UPGRADE.replace("Host: x\r\n", "") + "Sec-WebSocket-Version: 13\r\n\r\n"
    answer = exchange(plain.port, request.encode())
    assert answer.status == 400
    assert "Host" in answer.json()["message"]


def test_a_plain_request_without_host_is_400(plain: BrokerProcess) -> None:
    answer = exchange(plain.port, b"GET /healthz HTTP/1.1\r\n\r\n")
    assert (answer.status, answer.json()["error"]) == (400, "bad_request")


# --- bytes that are not HTTP -----------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(bytes.fromhex("160301020001000200"), id="tls-client-hello"),
        pytest.param(b"\x00\xff\xfe binary garbage", id="binary"),
        pytest.param(b"HELLO there\r\n", id="bad-request-line"),
        pytest.param(b"GET /ws HTTP/2.0\r\n", id="http2-version"),
    ],
)
def test_bytes_that_cannot_be_http_get_400_at_once(plain: BrokerProcess, data: bytes) -> None:
    # The node waits up to 60 s for a head (--handshake-timeout): an answer
    # within the socket's 10 s can only come from seeing the bytes are not HTTP.
    answer = exchange(plain.port, data)
    assert (answer.status, answer.json()["error"]) == (400, "bad_request")
