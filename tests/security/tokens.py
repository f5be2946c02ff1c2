"""Tokens and keys for the security tests, made with PyJWT and cryptography."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

SECRET = "test-secret-long-enough-for-hs256-and-even-for-hs512-0123456789-"
"""HMAC key of the test brokers (RFC 7518 asks for 32 bytes for HS256, 64 for HS512)."""

ALL_ROOMS = [{"pattern": "*", "rights": ["join", "say"]}]


def claims(
    sub: str = "alice", rooms: list[dict[str, Any]] | None = None, exp_in: float = 300, **extra: Any
) -> dict[str, Any]:
    """A claims set: ``sub``, ``exp`` ``exp_in`` seconds from now, and ``rooms``."""
    return {
        "sub": sub,
        "exp": int(time.time() + exp_in),
        "rooms": ALL_ROOMS if rooms is None else rooms,
        **extra,
    }


def hs256(key: str = SECRET, algorithm: str = "HS256", **fields: Any) -> str:
    """A token signed with the shared secret (or another key or HMAC algorithm)."""
    return jwt.encode(claims(**fields), key, algorithm=algorithm)


def rooms(*grants: tuple[str, str]) -> list[dict[str, Any]]:
    """``rooms(("team:42:*", "join say"), ("lobby", "join"))`` as the claim's list."""
    return [{"pattern": pattern, "rights": rights.split()} for pattern, rights in grants]


def ec_key_pair(directory: Path) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    """A fresh P-256 key pair; the public half written as PEM in ``directory``."""
    private = ec.generate_private_key(ec.SECP256R1())
    return private, _write_public(private.public_key(), directory / "ec-public.pem")


def rsa_key_pair(directory: Path) -> tuple[rsa.RSAPrivateKey, Path]:
    """A fresh 2048-bit RSA key pair; the public half written as PEM in ``directory``."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return private, _write_public(private.public_key(), directory / "rsa-public.pem")


def _write_public(key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey, path: Path) -> Path:
    path.write_bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path
