"""Node configuration: one table of options that the CLI flags, the
``BROKER_*`` environment variables and the README's table all come from.

Invariants:

- Precedence: a command-line flag wins over its environment variable, which
  wins over the default.
- A :class:`Config` holds only usable values: every field passes its
  option's check when the object is built, however it is built, so a node
  never starts with a setting that would break it later (a port of 70000, a
  negative frame size). A bad value raises :class:`OptionError`, whose text
  names the flag and the variable and says what is wrong, in one line.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MIN_API_KEY_LENGTH",
    "MIN_JWT_SECRET_BYTES",
    "OPTIONS",
    "Config",
    "Option",
    "OptionError",
    "from_env_and_args",
    "join_budget",
    "redis_seeds",
    "split_list",
]

# No ":" in a namespace: channels are "{namespace}:room:{room}" and room names
# may contain ":", so only a colon-free namespace makes (namespace, room) ->
# channel one-to-one and keeps one deployment's rooms out of another's.
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# A node id travels in welcome frames, Redis keys and log lines.
_NODE_ID_RE = re.compile(r"[^\s\x00-\x1f\x7f]{1,128}")

MIN_API_KEY_LENGTH = 16  # a guessable publish key would open every room to anyone
# RFC 7518, section 3.2: an HS256 key must be at least as long as the hash
# output (256 bits); a shorter one makes tokens cheaper to forge.
MIN_JWT_SECRET_BYTES = 32
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
_REDIS_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a node needs to know. See :data:`OPTIONS` for the meaning.

    Raises:
        OptionError: a field fails its option's check.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    redis_url: str | None = None
    redis_cluster: str | None = None
    redis_cluster_wait_replicas: int = 0
    node_id: str | None = None
    namespace: str = "roomcast"
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    close_timeout: float = 5.0
    max_message_size: int = 64 * 1024
    max_rooms_per_session: int = 100
    say_rate: float = 5000.0
    say_burst: int = 10000
    join_rate: float = 10.0
    join_burst: int = 200
    compression: bool = False
    slow_consumer_high_water: int = 1 << 20
    slow_consumer_grace: float = 5.0
    slow_consumer_hard_limit: int = 8 << 20
    max_connections: int = 20000
    handshake_timeout: float = 10.0
    idle_timeout: float = 60.0
    drain_seconds: float = 5.0
    node_timeout: float = 10.0
    history_size: int = 100
    history_ttl: float = 600.0
    history_meta_ttl: float = 86400.0
    workers: int = 1
    reuse_port: bool = False
    log_level: str = "INFO"
    log_format: str = "text"
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_algorithms: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway: float = 30.0
    allowed_origins: str | None = None
    api_key: str | None = None

    def __post_init__(self) -> None:
        for option in OPTIONS:
            value = getattr(self, option.name)
            if value is None or option.check is None:
                continue
            try:
                option.check(value)
            except ValueError as exc:
                raise OptionError(option, str(exc)) from None
        if self.redis_url is not None and self.redis_cluster is not None:
            cluster = next(option for option in OPTIONS if option.name == "redis_cluster")
            raise OptionError(cluster, "cannot be used with --redis-url: give one or the other")
        if self.history_meta_ttl < self.history_ttl:
            # docs/HISTORY-PRESENCE.md, "Options": a position outlives its messages.
            meta = next(option for option in OPTIONS if option.name == "history_meta_ttl")
            problem = f"must be at least --history-ttl ({self.history_ttl:g})"
            raise OptionError(meta, f"{problem}, not {self.history_meta_ttl:g}")


class OptionError(ValueError):
    """A setting that cannot be used.

    Its text is one line: the flag, the environment variable, and what is
    wrong (``--port (BROKER_PORT): must be from 1 to 65535, not 70000``).

    Attributes:
        option: the option at fault.
    """

    def __init__(self, option: Option, problem: str) -> None:
        super().__init__(f"{option.flag} ({option.env}): {problem}")
        self.option = option


def join_budget(config: Config) -> int:
    """The join/leave burst a session gets: ``join_burst``, but at least twice
    ``max_rooms_per_session``.

    Why: a client that reconnects rejoins every room at once, and one that
    moves leaves and rejoins them all; neither may be refused (issue 11).
    """
    return max(config.join_burst, 2 * config.max_rooms_per_session)


def split_list(text: str | None) -> tuple[str, ...]:
    """The items of a comma-separated option (``None`` or blank: none)."""
    return tuple(item for item in (part.strip() for part in (text or "").split(",")) if item)


# Parsers: text (a flag's or a variable's) to the field's type. Each raises
# ValueError with a message a user can act on; the range is the check's job.


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"must be a whole number, not {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"must be a number, not {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, not {text!r}")
    return value


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"must be true or false (1/0, yes/no, on/off), not {text!r}")


def _workers(text: str) -> int:
    if text.strip().lower() == "auto":
        return os.cpu_count() or 1
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"must be a whole number of at least 1, or 'auto', not {text!r}") from None


def _list(text: str) -> str:
    # Kept as text (not a tuple) so that it passes through BROKER_* variables
    # to worker processes unchanged; read it with split_list().
    return ",".join(split_list(text))


def _upper(text: str) -> str:
    return text.strip().upper()


def _lower(text: str) -> str:
    return text.strip().lower()


# Checks: raise ValueError saying what is wrong with a value of the right type.

Check = Callable[[Any], None]


def _between(low: float, high: float | None = None) -> Check:
    def check(value: float) -> None:
        if high is not None and not low <= value <= high:
            raise ValueError(f"must be from {low:g} to {high:g}, not {value:g}")
        if value < low:
            raise ValueError(f"must be at least {low:g}, not {value:g}")

    return check


def _above(low: float) -> Check:
    def check(value: float) -> None:
        if not value > low:
            raise ValueError(f"must be more than {low:g}, not {value:g}")

    return check


def _one_of(choices: tuple[str, ...]) -> Check:
    def check(value: str) -> None:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, not {value!r}")

    return check


def _workers_check(value: int) -> None:
    if value < 1:
        raise ValueError(f"must be at least 1, or 'auto' (one per core), not {value}")


def _host(value: str) -> None:
    if not value.strip():
        raise ValueError("must be an address or a host name, not empty")


def _node_id(value: str) -> None:
    if _NODE_ID_RE.fullmatch(value) is None:
        raise ValueError(f"must be 1-128 characters without spaces, not {value!r}")


def _namespace(value: str) -> None:
    if _NAMESPACE_RE.fullmatch(value) is None:
        raise ValueError(f"must be 1-64 of A-Z a-z 0-9 _ . - (no ':'), not {value!r}")


def _redis_url(value: str) -> None:
    # The URL forms redis-py's from_url() reads; checked here without
    # importing redis, so that a bad URL is reported before anything starts.
    parts = urlsplit(value)
    if parts.scheme not in _REDIS_SCHEMES:
        raise ValueError(
            f"must be a redis://, rediss:// or unix:// URL (redis://host:6379/0), not {value!r}"
        )
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError(f"has a port that is not a number from 0 to 65535: {value!r}") from None
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"must name a socket path (unix:///run/redis.sock): {value!r}")
        return
    if not parts.hostname:
        raise ValueError(f"must name a host (redis://host:6379/0): {value!r}")
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ValueError(f"must end with a database number (/0), not /{database}: {value!r}")


def _redis_cluster(value: str) -> None:
    # Seed nodes: one URL each, as --redis-url takes them, but TCP only and
    # database 0 (a cluster has no other).
    urls = [url.strip() for url in value.split(",")]
    if not any(urls):
        raise ValueError("must list at least one seed URL (redis://host:7000,redis://host:7001)")
    for url in urls:
        if not url:
            raise ValueError(f"has an empty seed between commas: {value!r}")
        if urlsplit(url).scheme == "unix":
            raise ValueError(f"takes redis:// or rediss:// seeds, not a socket: {url!r}")
        _redis_url(url)
        if urlsplit(url).path.strip("/") not in ("", "0"):
            raise ValueError(f"has a database other than 0, which a cluster has not: {url!r}")


def redis_seeds(value: str) -> list[str]:
    """The seed URLs of ``--redis-cluster``."""
    return [url.strip() for url in value.split(",")]


def _jwt_secret(value: str) -> None:
    size = len(value.encode())
    if size < MIN_JWT_SECRET_BYTES:
        raise ValueError(
            f"must be at least {MIN_JWT_SECRET_BYTES} bytes long for HS256 "
            f"(RFC 7518, section 3.2), not {size}"
        )


def _api_key(value: str) -> None:
    if len(value) < MIN_API_KEY_LENGTH:
        raise ValueError(f"must be at least {MIN_API_KEY_LENGTH} characters long, not {len(value)}")


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: its field, flag, environment variable, parser, check and help.

    Attributes:
        name: the :class:`Config` field.
        parse: text (a flag or a variable) to the field's type; raises
            ``ValueError`` saying what is wrong.
        help: one line for ``--help`` and the README.
        metavar: the flag's value in ``--help``; ``None`` for an on/off flag.
        check: raises ``ValueError`` when a value of the right type is out
            of range; ``None`` accepts any.
    """

    name: str
    parse: Callable[[str], Any]
    help: str
    metavar: str | None = None
    check: Check | None = None

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

    def read(self, text: str) -> Any:
        """Parse and check ``text``.

        Raises:
            OptionError: it does not parse, or the value is out of range.
        """
        try:
            value = self.parse(text)
            if self.check is not None:
                self.check(value)
        except ValueError as exc:
            raise OptionError(self, str(exc)) from None
        return value


MAX_HISTORY_SIZE = 10_000
"""The largest ``--history-size``: a room's history is read whole by a
recovering join, so it stays small enough to read in one round trip."""

_SECONDS = _between(0)
_POSITIVE_SECONDS = _above(0)
_COUNT = _between(0)  # 0 means "unlimited" or "off" where the help says so
_BYTES = _between(1)

OPTIONS: tuple[Option, ...] = (
    Option("host", str, "address to listen on (0.0.0.0 for all interfaces)", "ADDR", _host),
    Option(
        "port",
        _int,
        "TCP port for WebSocket (/ws) and HTTP (/healthz), 1-65535",
        "PORT",
        _between(1, 65535),
    ),
    Option(
        "redis_url",
        str,
        "Redis URL (redis://host:6379/0, rediss://, unix://) for a cluster of nodes; "
        "absent: in-memory, one node",
        "URL",
        _redis_url,
    ),
    Option(
        "redis_cluster",
        str,
        "comma-separated seed URLs of a Redis Cluster (redis://host:7000,redis://host:7001; "
        "rooms on sharded pub/sub); not with --redis-url",
        "URLS",
        _redis_cluster,
    ),
    Option(
        "redis_cluster_wait_replicas",
        _int,
        "with --redis-cluster: replicas that must have a message before its say is "
        "acknowledged (WAIT; 0: asynchronous, a failover may lose the last ones)",
        "N",
        _between(0, 16),
    ),
    Option(
        "node_id", str, "this node's id, as sent in welcome (default: generated)", "ID", _node_id
    ),
    Option("namespace", str, "prefix of every Redis channel name", "NAME", _namespace),
    Option(
        "ping_interval", _float, "seconds between WebSocket pings (0: off)", "SECONDS", _SECONDS
    ),
    Option(
        "ping_timeout",
        _float,
        "seconds to wait for a pong before closing",
        "SECONDS",
        _POSITIVE_SECONDS,
    ),
    Option(
        "close_timeout",
        _float,
        "seconds to wait for a closing handshake",
        "SECONDS",
        _POSITIVE_SECONDS,
    ),
    Option(
        "max_message_size",
        _int,
        "largest frame accepted; larger closes with 1009",
        "BYTES",
        _BYTES,
    ),
    Option(
        "max_rooms_per_session",
        _int,
        "rooms one session may be in (0: unlimited)",
        "N",
        _COUNT,
    ),
    Option(
        "say_rate",
        _float,
        "says per second per session, sustained (0: unlimited)",
        "N",
        _between(0),
    ),
    Option(
        "say_burst",
        _int,
        "says a session may send in a burst above the rate",
        "N",
        _between(1),
    ),
    Option(
        "join_rate",
        _float,
        "joins and leaves per second per session, together, sustained; beyond: "
        "error rate_limited (0: unlimited)",
        "N",
        _between(0),
    ),
    Option(
        "join_burst",
        _int,
        "joins and leaves a session may make in a burst; raised to twice "
        "--max-rooms-per-session if lower, so rejoining every room is never refused",
        "N",
        _between(1),
    ),
    Option("compression", _bool, "offer permessage-deflate (costs CPU and memory per client)"),
    Option(
        "slow_consumer_high_water",
        _int,
        "bytes buffered for a client above which it counts as slow",
        "BYTES",
        _BYTES,
    ),
    Option(
        "slow_consumer_grace",
        _float,
        "seconds a client may stay slow before 1013",
        "SECONDS",
        _SECONDS,
    ),
    Option(
        "slow_consumer_hard_limit",
        _int,
        "bytes buffered for a client at which it is closed with 1013 at once",
        "BYTES",
        _BYTES,
    ),
    Option(
        "max_connections",
        _int,
        "connections this node accepts; more are refused with HTTP 503 (0: unlimited)",
        "N",
        _COUNT,
    ),
    Option(
        "handshake_timeout",
        _float,
        "seconds a client may take to open its WebSocket",
        "SECONDS",
        _POSITIVE_SECONDS,
    ),
    Option(
        "idle_timeout",
        _float,
        "seconds a session may stay without joining any room before 1008 (0: never)",
        "SECONDS",
        _SECONDS,
    ),
    Option(
        "history_size",
        _int,
        "messages kept per room for recovery and history, at most "
        f"{MAX_HISTORY_SIZE:,} (0: no history and no positions)",
        "N",
        _between(0, MAX_HISTORY_SIZE),
    ),
    Option(
        "history_ttl",
        _float,
        "seconds a room's messages are kept after its last message",
        "SECONDS",
        _POSITIVE_SECONDS,
    ),
    Option(
        "history_meta_ttl",
        _float,
        "seconds a room's position (epoch, last offset) is kept after its last message; "
        "at least --history-ttl",
        "SECONDS",
        _POSITIVE_SECONDS,
    ),
    Option(
        "node_timeout",
        _float,
        "seconds without a heartbeat after which the other nodes take a node for dead "
        "and announce its sessions' left (Redis only)",
        "SECONDS",
        _POSITIVE_SECONDS,
    ),
    Option(
        "drain_seconds",
        _float,
        "on SIGTERM, seconds over which clients are closed with 1001, spread evenly",
        "SECONDS",
        _SECONDS,
    ),
    Option(
        "workers",
        _workers,
        "processes serving one port with SO_REUSEPORT, each a node on the Redis "
        "('auto': one per core; more than 1 needs --redis-url or --redis-cluster)",
        "N",
        _workers_check,
    ),
    Option("reuse_port", _bool, "bind with SO_REUSEPORT so several nodes can share the port"),
    Option(
        "log_level",
        _upper,
        "DEBUG, INFO, WARNING, ERROR or CRITICAL (any case)",
        "LEVEL",
        _one_of(LOG_LEVELS),
    ),
    Option(
        "log_format",
        _lower,
        "text (one line per event) or json (one JSON object per line, for log shippers)",
        "FORMAT",
        _one_of(LOG_FORMATS),
    ),
    Option(
        "jwt_secret",
        str,
        f"HMAC secret ({MIN_JWT_SECRET_BYTES}+ bytes) that client tokens are signed with "
        "(HS256); absent, with no public key: anonymous mode",
        "SECRET",
        _jwt_secret,
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
    Option(
        "jwt_leeway",
        _float,
        "seconds of clock skew tolerated on exp and nbf",
        "SECONDS",
        _SECONDS,
    ),
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
        _api_key,
    ),
)


def from_env_and_args(args: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Build a :class:`Config` from flags and the environment.

    Args:
        args: flag values by field name, ``None`` for a flag not given; text
            (as argparse leaves it) is parsed and checked like a variable,
            other values are taken as they are and checked by :class:`Config`.
        environ: the environment (default: ``os.environ``).

    Raises:
        OptionError: a flag or a variable does not parse, or a value is out
            of range; the message names both the flag and the variable.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for option in OPTIONS:
        given = args.get(option.name)
        if given is not None:
            values[option.name] = option.read(given) if isinstance(given, str) else given
        elif option.env in env:
            values[option.name] = option.read(env[option.env])
    return Config(**values)
