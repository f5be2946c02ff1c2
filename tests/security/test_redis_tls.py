"""Redis over TLS with a client certificate and a password, configured by the
URL alone (issue 11; README, "Redis TLS and a least-privilege user").

A redis-server of the test's own listens only on a TLS port and requires
client certificates (``tls-auth-clients yes``) and a password; its CA and
certificates are made for the test.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from broker.backends import BackendUnavailable, Delivery
from broker.backends.redis import RedisBackend, redis_client_factory
from tests.conftest import BrokerFactory, ClientFactory
from tests.support.certs import Authority, KeyPair
from tests.support.processes import REPO, RedisServer

pytestmark = pytest.mark.redis

PASSWORD = "tls-test-password-1234"


@dataclass(frozen=True)
class TlsRedis:
    """The server, and what a client needs to reach it."""

    server: RedisServer
    ca: Path
    client: KeyPair

    def url(self, ca: Path | None = None, client: KeyPair | None = None) -> str:
        """``rediss://`` URL with the password and the TLS files as query parameters."""
        query = {"ssl_ca_certs": str(ca or self.ca)}
        if client is not None:
            query |= {"ssl_certfile": str(client.cert), "ssl_keyfile": str(client.key)}
        return f"rediss://:{PASSWORD}@localhost:{self.server.port}/0?{urlencode(query)}"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    authority = Authority(tmp_path)
    server_pair = authority.issue("redis-server", server=True)
    server = RedisServer()
    server.extra_args = (
        "--port", "0",  # no plain TCP at all
        "--tls-port", str(server.port),
        "--tls-cert-file", str(server_pair.cert),
        "--tls-key-file", str(server_pair.key),
        "--tls-ca-cert-file", str(authority.cert),
        "--tls-auth-clients", "yes",
        "--requirepass", PASSWORD,
    )  # fmt: skip
    server.start()
    yield TlsRedis(server, authority.cert, authority.issue("node", server=False))
    server.kill()


def ignore(batch: Sequence[Delivery]) -> None:
    """A DeliverBatch for a node that only publishes."""


async def test_a_node_whose_url_names_the_ca_a_client_certificate_and_a_password_works(
    tls_redis: TlsRedis,
) -> None:
    received: list[Delivery] = []
    arrived = asyncio.Event()

    def deliver(batch: Sequence[Delivery]) -> None:
        received.extend(batch)
        arrived.set()

    connect = redis_client_factory(tls_redis.url(client=tls_redis.client))
    sender = RedisBackend(connect, node="n-a", namespace="tls")
    listener = RedisBackend(connect, node="n-b", namespace="tls")
    await sender.start(ignore)
    await listener.start(deliver)
    try:
        await listener.subscribe("room")
        await sender.publish("room", "s-1", b"over tls")
        await asyncio.wait_for(arrived.wait(), 5)
        assert sender.healthy() and listener.healthy()
    finally:
        await sender.close()
        await listener.close()
    assert [d.payload for d in received] == [b"over tls"]


async def test_two_broker_nodes_over_tls_deliver_across_nodes(
    tls_redis: TlsRedis, broker: BrokerFactory, wire: ClientFactory
) -> None:
    env = {"BROKER_REDIS_URL": tls_redis.url(client=tls_redis.client)}
    first, second = broker(env=env), broker(env=env)
    a, b = await wire(first.url), await wire(second.url)
    await a.join("room")
    await b.join("room")
    await a.expect("joined", session=b.session)

    await b.say("room", "hello over tls")

    await a.expect("message", body="hello over tls")


async def test_a_server_certificate_from_another_ca_fails_start_with_a_tls_message(
    tls_redis: TlsRedis, tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    stranger = Authority(tmp_path / "other", "stranger-ca")
    url = tls_redis.url(ca=stranger.cert, client=tls_redis.client)
    backend = RedisBackend(redis_client_factory(url, timeout=2.0), node="n-c")

    with pytest.raises(BackendUnavailable) as failure:
        await backend.start(ignore)

    message = str(failure.value)
    assert message.startswith(f"TLS with Redis at rediss://localhost:{tls_redis.server.port}")
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert PASSWORD not in message


def test_serve_without_a_client_certificate_exits_2_with_one_line(tls_redis: TlsRedis) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    port = tls_redis.server.port
    result = subprocess.run(
        [sys.executable, "-m", "broker", "serve", "--log-level", "error"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**environ, "BROKER_REDIS_URL": tls_redis.url()},
        timeout=30,
    )

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"broker serve: TLS with Redis at rediss://localhost:{port}"), line
    assert "CERTIFICATE_REQUIRED" in line
    assert PASSWORD not in line
