"""Token verification with PyJWT, and who may open a WebSocket
(docs/PROTOCOL-ADDITIONS.md, "Authentication").

No I/O but reading the public key file once, at startup. The signature and
the registered claims (``exp``, ``nbf``, ``iat``, ``aud``, ``iss``) are checked
by PyJWT against an explicit algorithm allowlist fixed by the configuration,
never by the token's own ``alg`` (RFC 8725, section 2.1). What the claims
grant, and the room patterns, are :mod:`broker.grants` (no JWT library).

:class:`HandshakeGuard` decides, from the request line and headers alone,
whether a WebSocket may open: the ``Origin`` allowlist first (403), then the
token (401), taken from the ``token`` query parameter (all a browser can set)
or an ``Authorization: Bearer`` header. Another scheme in ``Authorization``
(``Basic``, sent on its own by a browser for a page behind HTTP Basic on the
same host) is not a token and is ignored.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final, Protocol
from urllib.parse import parse_qs, urlsplit

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from broker.grants import Identity, RoomGrant, TokenError, valid_pattern

__all__ = [
    "DEFAULT_LEEWAY",
    "Authenticator",
    "HandshakeGuard",
    "HeaderLookup",
    "Refusal",
    "bearer_token",
    "load_authenticator",
]

DEFAULT_LEEWAY: Final = 30.0
"""Seconds of clock skew tolerated on ``exp``, ``nbf`` and ``iat``."""

# RFC 7518, section 3.2: an HMAC key must be at least as long as the hash.
HMAC_ALGORITHMS: Final = {"HS256": 32, "HS384": 48, "HS512": 64}
# NIST SP 800-131A: RSA keys of at least 2048 bits.
MIN_RSA_BITS: Final = 2048
RSA_ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS: Final = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class _Claims(msgspec.Struct):
    # Unknown claims are ignored; the ones read here must have these shapes.
    sub: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    exp: float
    rooms: list[RoomGrant] = []


class Authenticator:
    """Verifies tokens with one key and a fixed list of algorithms.

    Args:
        key: the HMAC secret, or the public key of an RSA or EC pair.
        algorithms: the algorithms a token may use (never ``none``).
        leeway: seconds of clock skew tolerated.
        audience: if set, the ``aud`` a token must carry.
        issuer: if set, the ``iss`` a token must carry.
    """

    def __init__(
        self,
        key: bytes | PublicKey,
        algorithms: Sequence[str],
        *,
        leeway: float = DEFAULT_LEEWAY,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> None:
        _check_algorithms(key, algorithms)
        self._key = key
        self.algorithms = tuple(algorithms)
        self._leeway = leeway
        self._audience = audience
        self._issuer = issuer
        required = ["exp", "sub"]
        required += ["aud"] if audience is not None else []
        required += ["iss"] if issuer is not None else []
        self._options: jwt.types.Options = {"require": required}

    def verify(self, token: str) -> Identity:
        """Check ``token`` and return who it names.

        Raises:
            TokenError: the token is malformed, wrongly signed, uses an
                algorithm not allowed, is expired or not yet valid, or its
                claims do not have the documented shape.
        """
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=list(self.algorithms),
                options=self._options,
                leeway=self._leeway,
                audience=self._audience,
                issuer=self._issuer,
            )
        except jwt.InvalidTokenError as exc:
            raise TokenError(_reason(exc)) from None
        try:
            claims = msgspec.convert(payload, _Claims)
        except msgspec.ValidationError as exc:
            raise TokenError(f"bad claims: {exc}") from None
        bad = [grant.pattern for grant in claims.rooms if not valid_pattern(grant.pattern)]
        if bad:
            raise TokenError(f"bad room pattern {bad[0][:140]!r}")
        return Identity(claims.sub, claims.exp, tuple(claims.rooms))


def _reason(exc: jwt.InvalidTokenError) -> str:
    # Specific classes before the ones they derive from.
    match exc:
        case jwt.ExpiredSignatureError():
            return "token expired"
        case jwt.ImmatureSignatureError():
            return "token not yet valid"
        case jwt.InvalidAlgorithmError():
            return "token algorithm not allowed"
        case jwt.InvalidSignatureError():
            return "bad token signature"
        case jwt.MissingRequiredClaimError():
            return f"token lacks the {exc.claim!r} claim"
        case jwt.InvalidAudienceError():
            return "token is for another audience"
        case jwt.InvalidIssuerError():
            return "token is from another issuer"
        case jwt.DecodeError():
            return "malformed token"
        case _:
            return f"invalid token: {exc}"


def _allowed_for(key: bytes | PublicKey) -> frozenset[str]:
    if isinstance(key, bytes):
        return frozenset(HMAC_ALGORITHMS)
    if isinstance(key, rsa.RSAPublicKey):
        return RSA_ALGORITHMS
    # PyJWT checks the curve against ES256/384/512 itself; only that one fits.
    return frozenset({EC_ALGORITHMS[key.curve.name]})


def _check_algorithms(key: bytes | PublicKey, algorithms: Sequence[str]) -> None:
    # An HMAC algorithm with a public key would let anyone who has the public
    # key sign tokens (the "algorithm confusion" attack): each key kind gets
    # only the algorithms of its kind.
    if not algorithms:
        raise ValueError("at least one JWT algorithm is needed")
    allowed = _allowed_for(key)
    wrong = [name for name in algorithms if name not in allowed]
    if wrong:
        raise ValueError(
            f"JWT algorithm {wrong[0]!r} does not fit this key; use {', '.join(sorted(allowed))}"
        )
    if isinstance(key, bytes):
        needed = max(HMAC_ALGORITHMS[name] for name in algorithms)
        if len(key) < needed:
            raise ValueError(f"the JWT secret must be at least {needed} bytes long")
    elif isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise ValueError(f"the RSA key must have at least {MIN_RSA_BITS} bits")


def _load_public_key(path: str) -> PublicKey:
    try:
        key = load_pem_public_key(Path(path).read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read the JWT public key {path!r}: {exc.strerror}") from None
    except ValueError:
        raise ValueError(f"{path!r} is not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in EC_ALGORITHMS:
        return key
    raise ValueError(f"{path!r}: only RSA and EC (P-256, P-384, P-521) public keys are supported")


def load_authenticator(
    secret: str | None,
    public_key_path: str | None,
    algorithms: Sequence[str] = (),
    *,
    leeway: float = DEFAULT_LEEWAY,
    audience: str | None = None,
    issuer: str | None = None,
) -> Authenticator | None:
    """The authenticator a node's options ask for; ``None`` for anonymous mode.

    Default algorithms: HS256 for a secret, RS256 for an RSA key, and the
    curve's ES algorithm for an EC key.

    Raises:
        ValueError: both or a bad key given, or algorithms that do not fit it.
    """
    if secret is not None and public_key_path is not None:
        raise ValueError("give either a JWT secret or a JWT public key, not both")
    key: bytes | PublicKey
    if secret is not None:
        key = secret.encode()
        default = "HS256"
    elif public_key_path is not None:
        key = _load_public_key(public_key_path)
        default = "RS256" if isinstance(key, rsa.RSAPublicKey) else EC_ALGORITHMS[key.curve.name]
    else:
        if algorithms:
            raise ValueError("JWT algorithms are set but neither a secret nor a public key")
        return None
    return Authenticator(
        key, algorithms or (default,), leeway=leeway, audience=audience, issuer=issuer
    )


class HeaderLookup(Protocol):
    """Read access to request headers (websockets' ``Headers`` fits)."""

    def get_all(self, key: str) -> list[str]:
        """Every value of header ``key``, case-insensitively; ``[]`` if absent."""
        ...


@dataclass(frozen=True, slots=True)
class Refusal:
    """A handshake refused: answer HTTP ``status`` (401 or 403) with ``reason``."""

    status: int
    reason: str


def bearer_token(headers: HeaderLookup, *, other_schemes: bool = False) -> str | Refusal | None:
    """The token of the ``Authorization: Bearer`` header (RFC 6750, section 2.1).

    Args:
        headers: the request's headers.
        other_schemes: whether an ``Authorization`` header of another scheme
            (``Basic``) may be there for someone else; it is then ignored
            rather than refused.

    Returns:
        The token, ``None`` without a bearer credential, or a 401
        :class:`Refusal` when the header is repeated, empty, or (unless
        ``other_schemes``) not a bearer credential.
    """
    values = headers.get_all("Authorization")
    if other_schemes:
        values = [value for value in values if _scheme(value) == "bearer"]
    if not values:
        return None
    if len(values) > 1:
        return Refusal(401, "more than one Authorization header")
    token = values[0].strip().partition(" ")[2]
    if _scheme(values[0]) != "bearer" or not token.strip():
        return Refusal(401, "Authorization must be 'Bearer <token>'")
    return token.strip()


def _scheme(value: str) -> str:
    # The auth scheme is case-insensitive (RFC 9110, section 11.1).
    return value.strip().partition(" ")[0].lower()


class HandshakeGuard:
    """Who may open a WebSocket on this node.

    Args:
        authenticator: verifies tokens; ``None``: anonymous mode, no token
            is asked for (and one that is sent is ignored).
        allowed_origins: browser origins allowed (``https://app.example.com``,
            compared exactly); ``None``: any. A request without ``Origin``
            comes from a non-browser client and is always allowed.
    """

    def __init__(
        self, authenticator: Authenticator | None, allowed_origins: Collection[str] | None
    ) -> None:
        self.authenticator = authenticator
        self._origins = None if allowed_origins is None else frozenset(allowed_origins)

    def check(self, target: str, headers: HeaderLookup) -> Identity | Refusal | None:
        """Judge one handshake request.

        Args:
            target: the request target (path and query), e.g. ``/ws?token=...``.
            headers: its headers.

        Returns:
            The verified identity; ``None`` in anonymous mode; or why it is refused.
        """
        if self._origins is not None:
            # Cross-site WebSocket hijacking: a page on another origin could
            # otherwise open a socket with the user's ambient credentials.
            origins = headers.get_all("Origin")
            if len(origins) > 1 or (origins and origins[0] not in self._origins):
                return Refusal(403, "origin not allowed")
        if self.authenticator is None:
            return None
        token = self._token(target, headers)
        if token is None:
            return Refusal(401, "a token is required")
        if isinstance(token, Refusal):
            return token
        try:
            return self.authenticator.verify(token)
        except TokenError as exc:
            return Refusal(401, exc.reason)

    @staticmethod
    def _token(target: str, headers: HeaderLookup) -> str | Refusal | None:
        # A browser sends the Basic credentials of a page behind HTTP Basic on
        # the same host with every request, WebSocket handshakes included: they
        # are the page's, not a token, so they never stand in a token's way.
        in_header = bearer_token(headers, other_schemes=True)
        if isinstance(in_header, Refusal):
            return in_header
        in_query = parse_qs(urlsplit(target).query).get("token", [])
        if len(in_query) > 1:
            return Refusal(401, "more than one token parameter")
        if in_query and in_header is not None and in_query[0] != in_header:
            return Refusal(401, "two different tokens")
        return in_query[0] if in_query else in_header
