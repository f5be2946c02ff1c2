"""Authentication at the handshake (docs/PROTOCOL-ADDITIONS.md,
"Authentication"): a valid token opens a session, every bad one is refused
with HTTP 401 and a JSON reason before any WebSocket opens; a foreign
browser origin gets 403."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from websockets.typing import Origin

from tests.conftest import ClientFactory
from tests.security.conftest import ORIGIN, refused
from tests.security.tokens import claims, ec_key_pair, hs256
from tests.support.processes import BrokerProcess


async def test_token_in_the_query_parameter_opens_a_session(
    secured: BrokerProcess, wire: ClientFactory
) -> None:
    client = await wire(f"{secured.url}?token={hs256(sub='alice')}")
    assert client.welcome["user"] == "alice"


async def test_token_in_a_bearer_header_opens_a_session(
    secured: BrokerProcess, wire: ClientFactory
) -> None:
    headers = {"Authorization": f"Bearer {hs256(sub='bob')}"}
    client = await wire(secured.url, additional_headers=headers)
    assert client.welcome["user"] == "bob"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        pytest.param(None, "a token is required", id="missing"),
        pytest.param("not.a.token", "malformed token", id="malformed"),
        pytest.param(
            hs256(key="another-secret-long-enough-for-hs256-and-even-for-hs512-98765432"),
            "bad token signature",
            id="bad-signature",
        ),
        pytest.param(hs256(exp_in=-120), "token expired", id="expired"),
        pytest.param(hs256(nbf=int(time.time()) + 3600), "token not yet valid", id="not-yet-valid"),
        pytest.param(
            jwt.encode(claims(), "", algorithm="none"), "token algorithm not allowed", id="none"
        ),
        pytest.param(hs256(algorithm="HS512"), "token algorithm not allowed", id="HS512"),
    ],
)
async def test_bad_token_is_refused_with_401_and_a_reason(
    secured: BrokerProcess, token: str | None, reason: str
) -> None:
    url = secured.url if token is None else f"{secured.url}?token={token}"
    status, body = await refused(url)
    # One error shape for every HTTP error; `reason` kept as first documented.
    assert (status, body) == (401, {"error": "unauthorized", "message": reason, "reason": reason})


async def test_foreign_origin_is_refused_with_403(secured: BrokerProcess) -> None:
    status, body = await refused(
        f"{secured.url}?token={hs256()}", origin=Origin("https://evil.example")
    )
    reason = "origin not allowed"
    assert (status, body) == (403, {"error": "forbidden", "message": reason, "reason": reason})


async def test_allowed_origin_opens_a_session(secured: BrokerProcess, wire: ClientFactory) -> None:
    client = await wire(f"{secured.url}?token={hs256()}", origin=Origin(ORIGIN))
    assert client.welcome["type"] == "welcome"


@pytest.fixture(scope="module")
def es256(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[BrokerProcess, ec.EllipticCurvePrivateKey]]:
    """A node verifying ES256 tokens with a key pair generated for this module."""
    private, public_pem = ec_key_pair(Path(tmp_path_factory.mktemp("keys")))
    node = BrokerProcess(args=("--jwt-public-key", str(public_pem)))
    yield node.start(), private
    node.cleanup()


async def test_es256_token_opens_a_session(
    es256: tuple[BrokerProcess, ec.EllipticCurvePrivateKey], wire: ClientFactory
) -> None:
    node, private = es256
    token = jwt.encode(claims(sub="erin"), private, algorithm="ES256")
    client = await wire(f"{node.url}?token={token}")
    assert client.welcome["user"] == "erin"


async def test_hs256_token_is_refused_where_es256_is_configured(
    es256: tuple[BrokerProcess, ec.EllipticCurvePrivateKey],
) -> None:
    node, _ = es256
    status, body = await refused(f"{node.url}?token={hs256()}")
    assert (status, body["reason"]) == (401, "token algorithm not allowed")


def test_node_refuses_to_start_with_a_short_secret() -> None:
    node = BrokerProcess(env={"BROKER_JWT_SECRET": "short"})
    try:
        with pytest.raises(RuntimeError, match="at least 32 bytes"):
            node.start()
    finally:
        node.cleanup()  # also when it wrongly started: no orphan process
