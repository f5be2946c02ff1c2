"""broker.tokens.HandshakeGuard: who may open a WebSocket, judged from the
request target and headers alone."""

from __future__ import annotations

import pytest
from websockets.datastructures import Headers

from broker.grants import Identity
from broker.tokens import HandshakeGuard, Refusal, load_authenticator
from tests.security.tokens import SECRET, hs256

ORIGIN = "https://app.example.com"


def guard(origins: list[str] | None = None, anonymous: bool = False) -> HandshakeGuard:
    return HandshakeGuard(None if anonymous else load_authenticator(SECRET, None), origins)


def check(
    target: str = "/ws",
    headers: list[tuple[str, str]] | None = None,
    origins: list[str] | None = None,
    anonymous: bool = False,
) -> Identity | Refusal | None:
    return guard(origins, anonymous).check(target, Headers(headers or []))


def test_token_in_query_parameter_is_accepted() -> None:
    verdict = check(f"/ws?token={hs256(sub='q')}")
    assert isinstance(verdict, Identity) and verdict.user == "q"


def test_token_in_bearer_header_is_accepted() -> None:
    verdict = check(headers=[("Authorization", f"bearer {hs256(sub='h')}")])
    assert isinstance(verdict, Identity) and verdict.user == "h"


def test_missing_token_is_refused_with_401() -> None:
    assert check() == Refusal(401, "a token is required")


def test_two_different_tokens_are_refused() -> None:
    verdict = check(f"/ws?token={hs256(sub='a')}", [("Authorization", f"Bearer {hs256(sub='b')}")])
    assert verdict == Refusal(401, "two different tokens")


def test_repeated_token_parameter_is_refused() -> None:
    token = hs256()
    assert check(f"/ws?token={token}&token={token}") == Refusal(
        401, "more than one token parameter"
    )


BASIC = ("Authorization", "Basic YWxpY2U6c2VjcmV0")


def test_basic_authorization_beside_a_query_token_is_ignored() -> None:
    # Issue 11: a page behind HTTP Basic on the same host sends it on its own.
    verdict = check(f"/ws?token={hs256(sub='q')}", [BASIC])
    assert isinstance(verdict, Identity) and verdict.user == "q"


def test_basic_authorization_alone_is_no_token() -> None:
    assert check(headers=[BASIC]) == Refusal(401, "a token is required")


def test_bearer_header_beside_basic_authorization_is_used() -> None:
    verdict = check(headers=[BASIC, ("Authorization", f"Bearer {hs256(sub='h')}")])
    assert isinstance(verdict, Identity) and verdict.user == "h"


def test_empty_bearer_authorization_is_refused() -> None:
    verdict = check(f"/ws?token={hs256()}", [("Authorization", "Bearer ")])
    assert verdict == Refusal(401, "Authorization must be 'Bearer <token>'")


def test_two_bearer_headers_are_refused() -> None:
    token = hs256()
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
    assert check(headers=headers) == Refusal(401, "more than one Authorization header")


def test_anonymous_mode_ignores_tokens() -> None:
    assert check("/ws?token=garbage", anonymous=True) is None


def test_origin_not_in_the_allowlist_is_refused_with_403() -> None:
    verdict = check(headers=[("Origin", "https://evil.example")], origins=[ORIGIN])
    assert verdict == Refusal(403, "origin not allowed")


def test_origin_is_checked_before_the_token() -> None:
    verdict = check("/ws?token=garbage", [("Origin", "https://evil.example")], origins=[ORIGIN])
    assert isinstance(verdict, Refusal) and verdict.status == 403


@pytest.mark.parametrize("headers", [[("Origin", ORIGIN)], []], ids=["allowed", "absent"])
def test_allowed_or_absent_origin_passes(headers: list[tuple[str, str]]) -> None:
    assert check(headers=headers, origins=[ORIGIN], anonymous=True) is None


def test_repeated_origin_header_is_refused() -> None:
    headers = [("Origin", ORIGIN), ("Origin", "https://evil.example")]
    assert check(headers=headers, origins=[ORIGIN], anonymous=True) == Refusal(
        403, "origin not allowed"
    )
