"""broker.handshake: the opening handshake's own checks (RFC 6455, 4.2 and
4.4; RFC 9112, 3.2) on websockets' Sans-I/O protocol, and the one JSON error
body for every refusal."""

from __future__ import annotations

import json

from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from broker.handshake import judge
from broker.http_answer import HttpAnswer, error_answer
from protocol import ErrorCode
from tests.support.fakes import HANDSHAKE, FakeEdgeApp


def judged(request: bytes, app: FakeEdgeApp | None = None) -> tuple[object, ServerProtocol]:
    ws = ServerProtocol()
    ws.receive_data(request)
    return judge(app or FakeEdgeApp(), ws), ws


def test_a_valid_handshake_is_admitted_and_opens() -> None:
    verdict, ws = judged(HANDSHAKE)
    assert callable(verdict)
    assert ws.state is OPEN
    assert ws.data_to_send()[0].startswith(b"HTTP/1.1 101")


def test_a_handshake_without_host_is_400() -> None:
    verdict, ws = judged(HANDSHAKE.replace(b"Host: x\r\n", b""))
    assert isinstance(verdict, HttpAnswer)
    assert verdict.status == 400
    assert ws.state is not OPEN


def test_a_handshake_with_two_hosts_is_400() -> None:
    verdict, _ = judged(HANDSHAKE.replace(b"Host: x\r\n", b"Host: x\r\nHost: y\r\n"))
    assert isinstance(verdict, HttpAnswer)
    assert verdict.status == 400


def test_another_websocket_version_is_426_naming_version_13() -> None:
    verdict, _ = judged(HANDSHAKE.replace(b"Version: 13", b"Version: 8"))
    assert isinstance(verdict, HttpAnswer)
    assert verdict.status == 426
    assert ("Sec-WebSocket-Version", "13") in verdict.header_list()


def test_a_refusal_of_the_app_is_answered_as_it_is() -> None:
    app = FakeEdgeApp()
    app.refusal = error_answer(403, ErrorCode.FORBIDDEN, "origin not allowed", with_reason=True)
    verdict, ws = judged(HANDSHAKE, app)
    assert verdict is app.refusal
    assert ws.state is not OPEN


def test_websockets_own_refusal_gets_the_json_error_shape() -> None:
    verdict, _ = judged(HANDSHAKE.replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b""))
    assert isinstance(verdict, HttpAnswer)
    assert verdict.status == 400
    body = json.loads(verdict.body)
    assert body["error"] == "bad_request"
    assert "Sec-WebSocket-Key" in body["message"]


def test_a_head_websockets_cannot_parse_is_400() -> None:
    verdict, _ = judged(b"GET /ws HTTP/1.1\r\nno colon here\r\n\r\n")
    assert isinstance(verdict, HttpAnswer)
    assert verdict.status == 400
