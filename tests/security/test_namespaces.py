"""Two deployments on one Redis, told apart by ``--namespace``, never see
each other's rooms, and no room name reaches another namespace's channels."""

from __future__ import annotations

import pytest

from tests.conftest import BrokerFactory, ClientFactory
from tests.support.processes import BrokerProcess, RedisServer


@pytest.mark.redis
async def test_two_namespaces_on_one_redis_do_not_see_each_other(
    broker: BrokerFactory, shared_redis: RedisServer, namespace: str, wire: ClientFactory
) -> None:
    url = shared_redis.url
    a1 = broker("--redis-url", url, "--namespace", namespace + "-a")
    a2 = broker("--redis-url", url, "--namespace", namespace + "-a")
    b = broker("--redis-url", url, "--namespace", namespace + "-b")
    speaker, colleague, stranger = [await wire(n.url) for n in (a1, a2, b)]
    for client in (stranger, colleague, speaker):
        await client.join("x:room:y")
    await colleague.expect("joined", session=speaker.session)

    await speaker.say("x:room:y", "inside a")

    # The colleague in the same namespace, on another node, hears it through
    # Redis, so the stranger's silence is not a dead Redis path.
    await colleague.expect("message", body="inside a")
    await stranger.expect_silence()


@pytest.mark.parametrize("name", ["a:room:x", "a b", "", "a" * 65])
def test_namespace_outside_the_charset_is_refused_at_startup(name: str) -> None:
    # A ":" would let "{ns}:room:{room}" of one namespace equal that of another.
    node = BrokerProcess(args=("--namespace", name))
    with pytest.raises(RuntimeError, match="namespace"):
        node.start()
    node.cleanup()
