"""Node configuration: one table of options that the CLI flags, the
``BROKER_*`` environment variables and the README's table all come from.

Precedence: a command-line flag wins over its environment variable, which
wins over the default.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["OPTIONS", "Config", "Option", "from_env_and_args", "split_list"]

# No ":" in a namespace: channels are "{namespace}:room:{room}" and room names
# may contain ":", so only a colon-free namespace makes (namespace, room) ->
# channel one-to-one and keeps one deployment's rooms out of another's.
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")

MIN_API_KEY_LENGTH = 16  # a guessable publish key would open every room to anyone


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a node needs to know. See :data:`OPTIONS` for the meaning."""

    host: str = "127.0.0.1"
    port: int = 8765
    redis_url: str | None = None
    node_id: str | None = None
    namespace: str = "roomcast"
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    close_timeout: float = 5.0
    max_message_size: int = 64 * 1024
    max_rooms_per_session: int = 100
    say_rate: float = 5000.0
    say_burst: int = 10000
    compression: bool = False
    slow_consumer_high_water: int = 1 << 20
    slow_consumer_grace: float = 5.0
    slow_consumer_hard_limit: int = 8 << 20
    max_connections: int = 20000
    handshake_timeout: float = 10.0
    idle_timeout: float = 60.0
    drain_seconds: float = 5.0
    node_timeout: float = 10.0
    workers: int = 1
    reuse_port: bool = False
    log_level: str = "INFO"
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_algorithms: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway: float = 30.0
    allowed_origins: str | None = None
    api_key: str | None = None

    def __post_init__(self) -> None:
        if _NAMESPACE_RE.fullmatch(self.namespace) is None:
            raise ValueError(f"namespace {self.namespace!r}: 1-64 of A-Z a-z 0-9 _ . - (no ':')")
        if self.api_key is not None and len(self.api_key) < MIN_API_KEY_LENGTH:
            raise ValueError(f"the API key must be at least {MIN_API_KEY_LENGTH} characters long")


def split_list(text: str | None) -> tuple[str, ...]:
    """The items of a comma-separated option (``None`` or blank: none)."""
    return tuple(item for item in (part.strip() for part in (text or "").split(",")) if item)


def _list(text: str) -> str:
    # Kept as text (not a tuple) so that it passes through BROKER_* variables
    # to worker processes unchanged; read it with split_list().
    return ",".join(split_list(text))


def _workers(text: str) -> int:
    if text.strip().lower() == "auto":
        return os.cpu_count() or 1
    count = int(text)
    if count < 1:
        raise ValueError(f"workers must be at least 1 or 'auto', not {text!r}")
    return count


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: its field, flag, environment variable, parser and help."""

    name: str
    parse: Callable[[str], Any]
    help: str
    metavar: str | None = None

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. ``--redis-url``."""
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        """The environment variable, e.g. ``BROKER_REDIS_URL``."""
        return "BROKER_" + self.name.upper()

    @property
    def default(self) -> Any:
        """The default value, from :class:`Config`."""
        return next(f for f in dataclasses.fields(Config) if f.name == self.name).default


OPTIONS: tuple[Option, ...] = (
    Option("host", str, "address to listen on (0.0.0.0 for all interfaces)", "ADDR"),
    Option("port", int, "TCP port for WebSocket (/ws) and HTTP (/healthz)", "PORT"),
    Option(
        "redis_url",
        str,
        "Redis URL (redis://host:6379/0) for a cluster of nodes; absent: in-memory, one node",
        "URL",
    ),
    Option("node_id", str, "this node's id, as sent in welcome (default: generated)", "ID"),
    Option("namespace", str, "prefix of every Redis channel name", "NAME"),
    Option("ping_interval", float, "seconds between WebSocket pings (0: off)", "SECONDS"),
    Option("ping_timeout", float, "seconds to wait for a pong before closing", "SECONDS"),
    Option("close_timeout", float, "seconds to wait for a closing handshake", "SECONDS"),
    Option("max_message_size", int, "largest frame accepted; larger closes with 1009", "BYTES"),
    Option("max_rooms_per_session", int, "rooms one session may be in (0: unlimited)", "N"),
    Option("say_rate", float, "says per second per session, sustained (0: unlimited)", "N"),
    Option("say_burst", int, "says a session may send in a burst above the rate", "N"),
    Option("compression", _bool, "offer permessage-deflate (costs CPU and memory per client)"),
    Option(
        "slow_consumer_high_water",
        int,
        "bytes buffered for a client above which it counts as slow",
        "BYTES",
    ),
    Option("slow_consumer_grace", float, "seconds a client may stay slow before 1013", "SECONDS"),
    Option(
        "slow_consumer_hard_limit",
        int,
        "bytes buffered for a client at which it is closed with 1013 at once",
        "BYTES",
    ),
    Option(
        "max_connections",
        int,
        "connections this node accepts; more are refused with HTTP 503 (0: unlimited)",
        "N",
    ),
    Option(
        "handshake_timeout", float, "seconds a client may take to open its WebSocket", "SECONDS"
    ),
    Option(
        "idle_timeout",
        float,
        "seconds a session may stay without joining any room before 1008 (0: never)",
        "SECONDS",
    ),
    Option(
        "node_timeout",
        float,
        "seconds without a heartbeat after which the other nodes take a node for dead "
        "and announce its sessions' left (Redis only)",
        "SECONDS",
    ),
    Option(
        "drain_seconds",
        float,
        "on SIGTERM, seconds over which clients are closed with 1001, spread evenly",
        "SECONDS",
    ),
    Option(
        "workers",
        _workers,
        "processes serving one port with SO_REUSEPORT, each a node on the Redis "
        "('auto': one per core; more than 1 needs --redis-url)",
        "N",
    ),
    Option("reuse_port", _bool, "bind with SO_REUSEPORT so several nodes can share the port"),
    Option("log_level", str.upper, "DEBUG, INFO, WARNING or ERROR", "LEVEL"),
    Option(
        "jwt_secret",
        str,
        "HMAC secret (32+ bytes) that client tokens are signed with (HS256); "
        "absent, with no public key: anonymous mode",
        "SECRET",
    ),
    Option(
        "jwt_public_key",
        str,
        "PEM file of the RSA or EC public key client tokens are signed with (RS256, ES256)",
        "FILE",
    ),
    Option(
        "jwt_algorithms",
        _list,
        "comma-separated token algorithms to accept (default: HS256, RS256 or ES256 by key)",
        "ALGS",
    ),
    Option("jwt_audience", str, "if set, the aud claim every token must carry", "AUD"),
    Option("jwt_issuer", str, "if set, the iss claim every token must carry", "ISS"),
    Option("jwt_leeway", float, "seconds of clock skew tolerated on exp and nbf", "SECONDS"),
    Option(
        "allowed_origins",
        _list,
        "comma-separated browser origins (https://app.example.com) allowed to open "
        "WebSockets; others get HTTP 403 (absent: any)",
        "ORIGINS",
    ),
    Option(
        "api_key",
        str,
        "bearer key of the server publish API, POST /publish (absent: the API is off)",
        "KEY",
    ),
)


def from_env_and_args(args: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Build a :class:`Config` from parsed flags (``None`` = not given) and the environment.

    Raises:
        ValueError: an environment variable does not parse.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for option in OPTIONS:
        given = args.get(option.name)
        if given is not None:
            values[option.name] = given
        elif option.env in env:
            try:
                values[option.name] = option.parse(env[option.env])
            except ValueError as exc:
                raise ValueError(f"{option.env}: {exc}") from exc
    return Config(**values)
