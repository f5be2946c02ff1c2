"""``POST /publish`` (docs/PROTOCOL-ADDITIONS.md, "Server publish API"): a
service with the API key sends a message to a room's members."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.conftest import BrokerFactory, ClientFactory
from tests.security.conftest import MAX_SIZE, post
from tests.security.tokens import hs256
from tests.support.processes import BrokerProcess, RedisServer


async def test_published_message_reaches_every_member_from_server(
    secured: BrokerProcess, wire: ClientFactory
) -> None:
    members = [await wire(f"{secured.url}?token={hs256(sub=u)}") for u in ("a", "b")]
    for member in members:
        await member.join("news")
    await members[0].expect("joined", session=members[1].session)
    body = json.dumps({"room": "news", "body": {"headline": "hi"}, "user": "ci"}).encode()

    status, answer, _ = await asyncio.to_thread(post, secured.http + "/publish", body)

    assert (status, answer["status"]) == (202, "accepted")
    # docs/HISTORY-PRESENCE.md: the 202 carries the position the message got.
    assert answer["offset"] >= 1 and answer["epoch"]
    for member in members:
        event = await member.expect("message", room="news", body={"headline": "hi"})
        assert (event["from"], event["user"]) == ("server", "ci")


async def test_published_message_without_user_has_no_user(
    secured: BrokerProcess, wire: ClientFactory
) -> None:
    member = await wire(f"{secured.url}?token={hs256()}")
    await member.join("plain-news")
    await asyncio.to_thread(post, secured.http + "/publish", b'{"room":"plain-news","body":"x"}')
    event = await member.expect("message", room="plain-news")
    assert "user" not in event


@pytest.mark.parametrize("key", ["wrong-key", None], ids=["wrong-key", "no-key"])
def test_publish_without_the_right_key_is_401(secured: BrokerProcess, key: str | None) -> None:
    status, answer, headers = post(secured.http + "/publish", b'{"room":"r","body":1}', key)
    assert (status, answer["error"]) == (401, "unauthorized")
    assert headers["WWW-Authenticate"].startswith("Bearer")


def test_publish_larger_than_the_size_limit_is_413(secured: BrokerProcess) -> None:
    body = json.dumps({"room": "r", "body": "x" * MAX_SIZE}).encode()
    status, _, _ = post(secured.http + "/publish", body)
    assert status == 413


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"room":"no spaces","body":1}', "bad_room"),
        (b'{"room":"r"', "bad_json"),
        (b'{"room":"r"}', "bad_message"),
    ],
    ids=["bad-room", "bad-json", "no-body-field"],
)
def test_bad_publish_request_is_400(secured: BrokerProcess, body: bytes, error: str) -> None:
    status, answer, _ = post(secured.http + "/publish", body)
    assert (status, answer["error"]) == (400, error)


@pytest.mark.redis
def test_publish_while_redis_is_down_is_503(
    broker: BrokerFactory, redis_server: RedisServer
) -> None:
    node = broker("--redis-url", redis_server.url, env={"BROKER_API_KEY": "k" * 32})
    redis_server.kill()
    status, answer, _ = post(node.http + "/publish", b'{"room":"r","body":1}', "k" * 32)
    assert (status, answer["error"]) == (503, "unavailable")
