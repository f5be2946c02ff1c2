"""A least-privilege Redis user is enough, and a user short of a right never
gets ready (issue 11; README, "Redis TLS and a least-privilege user").

The rule below is the README's, word for word but the password (a test
compares them): two
nodes running as that user deliver across nodes, announce joins and leaves,
and reap a killed node's members, and Redis records no denied command
(``ACL LOG`` stays empty), so the rule is proven sufficient.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import BrokerFactory, ClientFactory
from tests.support.processes import REPO, BrokerProcess, RedisServer

pytestmark = pytest.mark.redis

USER = "roomcast"
PASSWORD = "acl-test-password-1234"
NAMESPACE = "roomcast"  # the default --namespace


def rule_for(password: str) -> str:
    """The README's rule for the default namespace and a user named roomcast."""
    return (
        f"ACL SETUSER {USER} on >{password} resetkeys ~{NAMESPACE}:* ~{{{NAMESPACE}:* "
        f"resetchannels &{{{NAMESPACE}:* -@all +ping +spublish +ssubscribe +sunsubscribe "
        "+script|load +evalsha +hincrby +hget +hexists +rpush +lpop +ltrim +llen +lrange +pexpire "
        "+set +exists +del +sadd +srem +smembers +hset +hdel +hgetall +hlen +hscan +multi +exec"
    )


RULE = rule_for(PASSWORD)


def setuser(redis: RedisServer, rule: str) -> None:
    """Run an ``ACL SETUSER`` rule on ``redis`` (as its unrestricted default user)."""
    reply = redis.cli(*rule.split())
    assert reply == "OK", reply


def without(rule: str, word: str) -> str:
    """``rule`` without ``word``."""
    assert f" {word}" in rule
    return rule.replace(f" {word}", "")


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``check`` (another process's state) until it is true."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


@pytest.fixture
def acl_redis(redis_server: RedisServer) -> RedisServer:
    """A redis-server of the test's own with the README's user on it."""
    setuser(redis_server, RULE)
    return redis_server


def user_url(redis: RedisServer, user: str = USER) -> dict[str, str]:
    """The node's environment: the URL with the user and password (not a flag:
    flags show in ``ps``)."""
    return {"BROKER_REDIS_URL": f"redis://{user}:{PASSWORD}@127.0.0.1:{redis.port}/0"}


@pytest.fixture
def launched() -> Iterator[list[BrokerProcess]]:
    """Nodes that the test launches without waiting for readiness."""
    nodes: list[BrokerProcess] = []
    yield nodes
    for node in nodes:
        node.cleanup()


def test_the_readme_shows_this_rule() -> None:
    readme = (REPO / "README.md").read_text()
    rules = re.findall(r"^ACL SETUSER .*$", readme, flags=re.MULTILINE)
    assert rule_for("PASSWORD") in rules, rules


async def test_two_nodes_as_the_acl_user_deliver_and_announce_across_nodes(
    acl_redis: RedisServer, broker: BrokerFactory, wire: ClientFactory
) -> None:
    first, second = broker(env=user_url(acl_redis)), broker(env=user_url(acl_redis))
    a, b = await wire(first.url), await wire(second.url)
    await a.join("room")
    await b.join("room")
    await a.expect("joined", session=b.session)

    await b.say("room", "hello from B")
    await a.expect("message", body="hello from B")
    await a.say("room", "hello from A")
    await b.expect("message", body="hello from A")
    await b.request("leave", room="room")
    await a.expect("left", session=b.session)

    assert acl_redis.cli("ACL", "LOG") == ""


async def test_a_killed_nodes_members_are_reaped_by_a_node_of_the_acl_user(
    acl_redis: RedisServer, broker: BrokerFactory, wire: ClientFactory
) -> None:
    args = ("--node-timeout", "1.5")
    survivor = broker(*args, env=user_url(acl_redis))
    doomed = broker(*args, env=user_url(acl_redis))
    watcher, victim = await wire(survivor.url), await wire(doomed.url)
    await watcher.join("room")
    await victim.join("room")
    await watcher.expect("joined", session=victim.session)

    doomed.kill()  # SIGKILL: only the survivor can announce the left

    await watcher.expect("left", session=victim.session, timeout=10)
    assert acl_redis.cli("ACL", "LOG") == ""


@pytest.mark.parametrize(
    ("missing", "said"),
    [
        ("+spublish", "the canary publish failed (NoPermissionError (NOPERM)"),
        (f"&{{{NAMESPACE}:*", "redis refused a subscription (NoPermissionError (NOPERM)"),
    ],
    ids=["no-publish", "no-channels"],
)
def test_a_user_short_of_a_right_never_gets_ready_and_the_log_says_why(
    redis_server: RedisServer, launched: list[BrokerProcess], missing: str, said: str
) -> None:
    setuser(redis_server, without(RULE, missing))
    node = BrokerProcess(env=user_url(redis_server))
    launched.append(node.launch())

    wait_until(lambda: node.health()[0] != 0, timeout=15)  # listening

    assert said in node.log()
    # Readiness needs a canary back, which no retry brings: never 200 through
    # the canary timeout (3 s) and a few more rounds.
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        assert node.health()[0] == 503, node.log()
        time.sleep(0.2)  # the pace of the probe, not a wait for anything
