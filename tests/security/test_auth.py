"""broker.tokens and broker.grants: token verification and room patterns, with plain data
(docs/PROTOCOL-ADDITIONS.md, "Authentication")."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest

from broker.grants import Identity, RoomGrant, TokenError
from broker.tokens import Authenticator, load_authenticator
from tests.security.tokens import SECRET, claims, ec_key_pair, hs256, rooms, rsa_key_pair


@pytest.fixture
def authenticator() -> Authenticator:
    loaded = load_authenticator(SECRET, None)
    assert loaded is not None
    return loaded


def refusal(authenticator: Authenticator, token: str) -> str:
    with pytest.raises(TokenError) as info:
        authenticator.verify(token)
    return info.value.reason


# --- room patterns ---------------------------------------------------------------


def identity(*grants: tuple[str, str]) -> Identity:
    return Identity(
        "alice",
        0.0,
        tuple(RoomGrant(g["pattern"], frozenset(g["rights"])) for g in rooms(*grants)),
    )


@pytest.mark.parametrize("room", ["team:42:chat", "team:42:", "team:42:a:b"])
def test_prefix_pattern_matches_rooms_under_the_prefix(room: str) -> None:
    assert identity(("team:42:*", "join")).allows(room, "join")


@pytest.mark.parametrize("room", ["team:420", "team:4", "team:42", "xteam:42:chat"])
def test_prefix_pattern_does_not_match_other_rooms(room: str) -> None:
    assert not identity(("team:42:*", "join")).allows(room, "join")


def test_exact_pattern_matches_only_that_room() -> None:
    grant = identity(("lobby", "join"))
    assert grant.allows("lobby", "join")
    assert not grant.allows("lobby2", "join")


def test_star_alone_matches_every_room() -> None:
    assert identity(("*", "say")).allows("anything:at@all", "say")


def test_a_grant_gives_only_its_rights() -> None:
    grant = identity(("lobby", "join"))
    assert not grant.allows("lobby", "say")


def test_no_rooms_claim_allows_no_room(authenticator: Authenticator) -> None:
    token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, SECRET, "HS256")
    assert not authenticator.verify(token).allows("lobby", "join")


# --- verification ----------------------------------------------------------------


def test_valid_token_gives_user_expiry_and_grants(authenticator: Authenticator) -> None:
    token = hs256(sub="bob", rooms=rooms(("team:42:*", "join say")), exp_in=60)
    verified = authenticator.verify(token)
    assert verified.user == "bob"
    assert verified.expires_at == pytest.approx(time.time() + 60, abs=2)
    assert verified.allows("team:42:x", "say")


def test_expired_token_is_refused(authenticator: Authenticator) -> None:
    assert refusal(authenticator, hs256(exp_in=-120)) == "token expired"


def test_token_expired_within_the_leeway_is_accepted(authenticator: Authenticator) -> None:
    assert authenticator.verify(hs256(exp_in=-5)).user == "alice"


def test_token_not_yet_valid_is_refused(authenticator: Authenticator) -> None:
    token = hs256(nbf=int(time.time()) + 120)
    assert refusal(authenticator, token) == "token not yet valid"


def test_wrongly_signed_token_is_refused(authenticator: Authenticator) -> None:
    token = hs256(key="another-secret-long-enough-for-hs256-and-even-for-hs512-98765432")
    assert refusal(authenticator, token) == "bad token signature"


def test_unsigned_alg_none_token_is_refused(authenticator: Authenticator) -> None:
    token = jwt.encode(claims(), "", algorithm="none")
    assert refusal(authenticator, token) == "token algorithm not allowed"


def test_algorithm_not_configured_is_refused(authenticator: Authenticator) -> None:
    token = hs256(algorithm="HS512")
    assert refusal(authenticator, token) == "token algorithm not allowed"


@pytest.mark.parametrize("claim", ["sub", "exp"])
def test_token_without_a_required_claim_is_refused(
    authenticator: Authenticator, claim: str
) -> None:
    payload = claims()
    del payload[claim]
    token = jwt.encode(payload, SECRET, "HS256")
    assert refusal(authenticator, token) == f"token lacks the {claim!r} claim"


@pytest.mark.parametrize("token", ["", "not-a-token", "a.b.c"])
def test_malformed_token_is_refused(authenticator: Authenticator, token: str) -> None:
    assert refusal(authenticator, token) == "malformed token"


@pytest.mark.parametrize(
    "grants",
    [
        [{"pattern": "lobby", "rights": ["join", "fly"]}],
        [{"pattern": "lobby"}],
        [{"pattern": "te*am", "rights": ["join"]}],
        [{"pattern": "", "rights": ["join"]}],
        "lobby",
    ],
)
def test_rooms_claim_of_the_wrong_shape_is_refused(
    authenticator: Authenticator, grants: object
) -> None:
    token = jwt.encode({**claims(), "rooms": grants}, SECRET, "HS256")
    assert refusal(authenticator, token).startswith(("bad claims", "bad room pattern"))


def test_audience_is_required_when_configured() -> None:
    checker = load_authenticator(SECRET, None, audience="roomcast")
    assert checker is not None
    assert refusal(checker, hs256(aud="billing")) == "token is for another audience"
    assert checker.verify(hs256(aud="roomcast")).user == "alice"


def test_es256_token_verifies_with_the_public_key(tmp_path: Path) -> None:
    private, public_pem = ec_key_pair(tmp_path)
    checker = load_authenticator(None, str(public_pem))
    assert checker is not None
    assert checker.algorithms == ("ES256",)
    assert checker.verify(jwt.encode(claims(), private, "ES256")).user == "alice"


def test_public_key_used_as_hmac_secret_is_refused(tmp_path: Path) -> None:
    # The "algorithm confusion" attack: sign HS256 with the (public) PEM bytes.
    _, public_pem = rsa_key_pair(tmp_path)
    checker = load_authenticator(None, str(public_pem))
    assert checker is not None

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(json.dumps(claims()).encode())
    mac = hmac.new(public_pem.read_bytes(), signing_input, hashlib.sha256).digest()
    forged = (signing_input + b"." + b64(mac)).decode()

    assert refusal(checker, forged) == "token algorithm not allowed"


# --- configuration ---------------------------------------------------------------


def test_no_key_means_anonymous_mode() -> None:
    assert load_authenticator(None, None) is None


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        load_authenticator("x" * 31, None)


def test_secret_must_be_as_long_as_the_longest_hash_allowed() -> None:
    with pytest.raises(ValueError, match="at least 64 bytes"):
        load_authenticator("x" * 40, None, ["HS256", "HS512"])


def test_secret_and_public_key_together_are_refused(tmp_path: Path) -> None:
    _, public_pem = ec_key_pair(tmp_path)
    with pytest.raises(ValueError, match="not both"):
        load_authenticator(SECRET, str(public_pem))


@pytest.mark.parametrize("algorithm", ["none", "RS256", "ES256"])
def test_algorithms_of_another_key_kind_are_refused_for_a_secret(algorithm: str) -> None:
    with pytest.raises(ValueError, match="does not fit this key"):
        load_authenticator(SECRET, None, [algorithm])


def test_hmac_algorithm_is_refused_for_a_public_key(tmp_path: Path) -> None:
    _, public_pem = rsa_key_pair(tmp_path)
    with pytest.raises(ValueError, match="does not fit this key"):
        load_authenticator(None, str(public_pem), ["HS256"])


def test_rsa_key_defaults_to_rs256(tmp_path: Path) -> None:
    _, public_pem = rsa_key_pair(tmp_path)
    checker = load_authenticator(None, str(public_pem))
    assert checker is not None
    assert checker.algorithms == ("RS256",)


def test_unreadable_key_file_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        load_authenticator(None, str(tmp_path / "missing.pem"))
