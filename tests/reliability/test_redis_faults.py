"""What clients see when the Redis under a cluster of two nodes fails, and
that the cluster heals by itself once Redis is back (README, "Failure modes").

Faults, each on a redis-server of the test's own:

* ``stop``: SIGTERM, then restarted on the same port.
* ``kill``: SIGKILL (a crash), then restarted on the same port.
* ``pubsub``: ``CLIENT KILL TYPE pubsub``: only the subscriber connections die.
* ``sleep``: ``DEBUG SLEEP 4``: Redis stalls for four seconds.
* ``pause``: ``CLIENT PAUSE 4000 ALL``: Redis answers no client for four seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.reliability.conftest import ROOM
from tests.reliability.observe import eventually, health, scrape
from tests.support.processes import BrokerProcess, RedisServer, http_get
from tests.support.wire import Frame, WireClient

pytestmark = pytest.mark.redis

OUTAGES = ["stop", "kill"]
STALLS = ["sleep", "pause"]
FAULTS = [*OUTAGES, "pubsub", *STALLS]
STALL_SECONDS = 4
# A node reconnects with a full-jitter backoff capped at 5 s, so "by itself
# within seconds" is bounded by that cap plus a margin for a loaded machine.
RECOVERY_SECONDS = 10.0
# A say's reply may wait for a stalled Redis; the publisher times out at 5 s.
REPLY_SECONDS = 7.0


@dataclass
class RedisFault:
    """Start and end one fault on ``redis``."""

    kind: str
    redis: RedisServer
    _stall: asyncio.Task[str] | None = field(default=None, repr=False)

    async def begin(self) -> None:
        """Inflict the fault."""
        redis = self.redis
        match self.kind:
            case "stop":
                await asyncio.to_thread(redis.stop)
            case "kill":
                await asyncio.to_thread(redis.kill)
            case "pubsub":
                killed = await asyncio.to_thread(redis.cli, "CLIENT", "KILL", "TYPE", "pubsub")
                assert int(killed) >= 2, killed  # one subscriber per node
            case "sleep":
                # redis-cli returns when the sleep is over: that is the end.
                self._stall = asyncio.create_task(
                    asyncio.to_thread(redis.cli, "DEBUG", "SLEEP", str(STALL_SECONDS))
                )
            case "pause":
                paused = await asyncio.to_thread(
                    redis.cli, "CLIENT", "PAUSE", str(STALL_SECONDS * 1000), "ALL"
                )
                assert paused == "OK", paused
            case _:
                raise AssertionError(self.kind)

    async def end(self) -> None:
        """Bring Redis back (or wait until the stall is over)."""
        match self.kind:
            case "stop" | "kill":
                await asyncio.to_thread(self.redis.start)
            case "sleep":
                assert self._stall is not None
                await self._stall
            case "pause":
                # A PING is held until the pause is over.
                assert await asyncio.to_thread(self.redis.cli, "PING") == "PONG"
            case "pubsub":
                pass


@pytest.fixture
async def fault(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[RedisFault]:
    """The fault named by the test's parameter, ended at teardown if the test did not."""
    inflicted = RedisFault(request.param, redis_server)
    yield inflicted
    if inflicted._stall is not None:
        await inflicted._stall


async def all_health(nodes: tuple[BrokerProcess, ...], status: int) -> bool:
    """Whether every node's ``/healthz`` answers ``status``."""
    return all([await health(node) == status for node in nodes])


async def wait_delivery(sender: WireClient, receiver: WireClient, timeout: float) -> float:
    """Say probes from ``sender`` until ``receiver`` gets one; seconds it took.

    Events other than the probes (late messages, announcements) are skipped.
    """
    started = time.monotonic()
    for n in itertools.count():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"no delivery within {timeout}s")
        probe = {"probe": n, "to": receiver.session}
        reply = await sender.request("say", room=ROOM, body=probe, timeout=REPLY_SECONDS)
        if reply["type"] != "ok":
            assert reply["code"] == "unavailable", reply
            await asyncio.sleep(0.2)  # pace the retries; nothing to wait for
            continue
        arrive_by = time.monotonic() + 0.5
        while (left := arrive_by - time.monotonic()) > 0:
            try:
                event = await receiver.next_event(timeout=left)
            except TimeoutError:
                break
            if event["type"] == "message" and event["body"] == probe:
                return time.monotonic() - started
    raise AssertionError("unreachable")


class Sayer:
    """Says in ``ROOM`` every 0.1 s without waiting for replies, and keeps
    every reply (or the absence of one)."""

    def __init__(self, client: WireClient) -> None:
        self.client = client
        self.requests: list[asyncio.Task[Frame]] = []
        self.refused = asyncio.Event()
        """Set once a say got ``unavailable``."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        for n in itertools.count():
            request = self.client.request("say", room=ROOM, body=n, timeout=REPLY_SECONDS)
            task = asyncio.create_task(request)
            task.add_done_callback(self._replied)
            self.requests.append(task)
            await asyncio.sleep(0.1)  # the pace of the publisher, not a wait for anything

    def _replied(self, task: asyncio.Task[Frame]) -> None:
        replied = not task.cancelled() and task.exception() is None
        if replied and task.result().get("code") == "unavailable":
            self.refused.set()

    async def stop(self) -> list[Any]:
        """Stop saying; return every reply, or the exception standing for none."""
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return await asyncio.gather(*self.requests, return_exceptions=True)


async def outage_seen(nodes: tuple[BrokerProcess, BrokerProcess], kind: str) -> None:
    """Wait until the nodes noticed the fault as they should."""
    if kind in OUTAGES:
        await eventually(lambda: all_health(nodes, 503), timeout=5)
    elif kind in STALLS:
        # /healthz turns 503 once no canary came back for 3 s.
        await eventually(lambda: all_health(nodes, 503), timeout=STALL_SECONDS + 1)
    else:
        # Fresh nodes had no reconnect before: one each shows they noticed.
        async def both_reconnected() -> bool:
            return all(
                scrape(node).value("roomcast_backend_reconnects_total") >= 1 for node in nodes
            )

        await eventually(both_reconnected, timeout=5)


# --- during the outage ---------------------------------------------------


@pytest.mark.parametrize("fault", OUTAGES, indirect=True)
async def test_while_redis_is_down_healthz_is_503_and_say_is_unavailable(
    fault: RedisFault,
    nodes: tuple[BrokerProcess, BrokerProcess],
    members: tuple[WireClient, WireClient],
) -> None:
    a, b = members
    await fault.begin()

    await eventually(lambda: all_health(nodes, 503), timeout=5)
    for client in (a, b):
        reply = await client.request("say", room=ROOM, body="lost?")
        assert (reply["type"], reply.get("code")) == ("error", "unavailable"), reply


@pytest.mark.parametrize("fault", OUTAGES, indirect=True)
async def test_while_redis_is_down_local_membership_is_kept(
    fault: RedisFault,
    nodes: tuple[BrokerProcess, BrokerProcess],
    members: tuple[WireClient, WireClient],
) -> None:
    a, b = members
    await fault.begin()
    await eventually(lambda: all_health(nodes, 503), timeout=5)

    await asyncio.sleep(1.0)  # the outage lasts: nobody may be dropped meanwhile
    for node in nodes:
        assert scrape(node).value("roomcast_memberships") == 1
    await a.expect_silence(0.2)
    await b.expect_silence(0.2)


@pytest.mark.parametrize("fault", ["kill"], indirect=True)
async def test_while_redis_is_down_livez_stays_200(
    fault: RedisFault, nodes: tuple[BrokerProcess, BrokerProcess]
) -> None:
    """Liveness is about the process, not its backend: an orchestrator must
    not restart nodes because Redis is away."""
    await fault.begin()
    await eventually(lambda: all_health(nodes, 503), timeout=5)

    for node in nodes:
        assert http_get(node.http + "/livez")[0] == 200


@pytest.mark.parametrize("fault", STALLS, indirect=True)
async def test_while_redis_stalls_healthz_turns_503(
    fault: RedisFault, nodes: tuple[BrokerProcess, BrokerProcess]
) -> None:
    await fault.begin()

    took = await eventually(lambda: all_health(nodes, 503), timeout=STALL_SECONDS + 1)

    assert took < STALL_SECONDS


@pytest.mark.parametrize("fault", FAULTS, indirect=True)
async def test_every_say_during_the_fault_gets_ok_or_unavailable(
    fault: RedisFault,
    nodes: tuple[BrokerProcess, BrokerProcess],
    members: tuple[WireClient, WireClient],
) -> None:
    a, _ = members
    sayer = Sayer(a)
    sayer.start()
    await fault.begin()
    await outage_seen(nodes, fault.kind)
    if fault.kind in OUTAGES:
        # An outage as short as the pace of the says may fall between two.
        await asyncio.wait_for(sayer.refused.wait(), REPLY_SECONDS)
    await fault.end()
    await eventually(lambda: all_health(nodes, 200), timeout=RECOVERY_SECONDS)

    replies = await sayer.stop()

    silent = [r for r in replies if isinstance(r, BaseException)]
    assert not silent, f"{len(silent)} of {len(replies)} says got no reply: {silent[:3]}"
    codes = {reply.get("code", reply["type"]) for reply in replies}
    assert codes <= {"ok", "unavailable"}, codes
    if fault.kind in OUTAGES:
        assert "unavailable" in codes


# --- after Redis is back ---------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS, indirect=True)
async def test_delivery_resumes_by_itself_after_the_fault(
    fault: RedisFault,
    nodes: tuple[BrokerProcess, BrokerProcess],
    members: tuple[WireClient, WireClient],
) -> None:
    a, b = members
    await fault.begin()
    await outage_seen(nodes, fault.kind)

    await fault.end()

    await eventually(lambda: all_health(nodes, 200), timeout=RECOVERY_SECONDS)
    # No client joins again: the nodes re-subscribe their rooms themselves.
    await wait_delivery(a, b, timeout=RECOVERY_SECONDS)
    await wait_delivery(b, a, timeout=RECOVERY_SECONDS)


@pytest.mark.parametrize("fault", [*OUTAGES, "pubsub"], indirect=True)
async def test_backend_reconnects_metric_grows_after_the_fault(
    fault: RedisFault, nodes: tuple[BrokerProcess, BrokerProcess]
) -> None:
    before = [scrape(node).value("roomcast_backend_reconnects_total") for node in nodes]
    await fault.begin()
    await outage_seen(nodes, fault.kind)

    await fault.end()

    await eventually(lambda: all_health(nodes, 200), timeout=RECOVERY_SECONDS)
    after = [scrape(node).value("roomcast_backend_reconnects_total") for node in nodes]
    assert all(x > y for x, y in zip(after, before, strict=True)), (before, after)


@pytest.mark.parametrize("fault", ["kill"], indirect=True)
async def test_healthz_returns_to_200_after_an_outage_in_which_a_say_failed(
    fault: RedisFault,
    nodes: tuple[BrokerProcess, BrokerProcess],
    members: tuple[WireClient, WireClient],
) -> None:
    """A node whose publish failed once must not stay unhealthy forever.

    The publisher is known to be up again when a canary publish succeeds, not
    only when a client's say does; with no say after the outage the node
    would otherwise stay 503 and never re-announce membership changes (found
    by this test, fixed in broker/backends/redis.py).
    """
    a, _ = members
    await fault.begin()
    await eventually(lambda: all_health(nodes, 503), timeout=5)
    reply = await a.request("say", room=ROOM, body="during the outage")
    assert reply.get("code") == "unavailable", reply

    await fault.end()

    await eventually(lambda: all_health(nodes, 200), timeout=RECOVERY_SECONDS)


@pytest.mark.parametrize("change", ["leave", "disconnect"])
@pytest.mark.parametrize("fault", OUTAGES, indirect=True)
async def test_membership_change_during_the_outage_reaches_the_other_node_afterwards(
    fault: RedisFault,
    change: str,
    nodes: tuple[BrokerProcess, BrokerProcess],
    members: tuple[WireClient, WireClient],
) -> None:
    """The ``left`` that could not be published during the outage is
    published once Redis is back (broker/node.py re-announces it), so the
    member on B does not keep a ghost."""
    a, b = members
    await fault.begin()
    await eventually(lambda: all_health(nodes, 503), timeout=5)
    if change == "leave":
        await a.request("leave", room=ROOM)
    else:
        await a.close()

    await fault.end()

    await b.expect("left", room=ROOM, session=a.session, timeout=RECOVERY_SECONDS)


@pytest.mark.parametrize("fault", OUTAGES, indirect=True)
async def test_redis_restart_announces_no_membership_change(
    fault: RedisFault,
    nodes: tuple[BrokerProcess, BrokerProcess],
    members: tuple[WireClient, WireClient],
) -> None:
    """Nobody joined or left: after Redis is back, no ``joined``/``left``.

    Bug (broker/backends/redis.py, ``_heartbeat``): a Redis that restarts
    empty has lost the ``nodes`` set, so every node finds itself "taken for
    dead" and re-announces ``joined`` for all its members: each client gets
    a second ``joined`` for a session it already knew, without a ``left`` in
    between. Proposed fix: re-record the memberships (Redis lost them) but
    call ``presence.revived`` only if a survivor really reaped this node:
    read ``EXISTS {namespace}:reaped:{node}`` in the heartbeat pipeline (and
    keep that marker until the revived node deletes it, not 30 s).
    """
    a, b = members
    await fault.begin()
    await eventually(lambda: all_health(nodes, 503), timeout=5)

    await fault.end()

    await eventually(lambda: all_health(nodes, 200), timeout=RECOVERY_SECONDS)
    await wait_delivery(a, b, timeout=RECOVERY_SECONDS)
    # A heartbeat round is at most 2 s with the default --node-timeout.
    await a.expect_silence(3.0)
    await b.expect_silence(0.5)


# --- a stall longer than the publish timeout -------------------------------


def redis_is_stalled(redis: RedisServer) -> bool:
    """Whether Redis leaves a PING unanswered for 0.2 s."""
    with socket.create_connection(("127.0.0.1", redis.port), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        sock.settimeout(0.2)
        try:
            return not sock.recv(16)
        except TimeoutError:
            return True


async def test_say_whose_publish_redis_never_confirmed_gets_internal_not_unavailable(
    redis_server: RedisServer,
    nodes: tuple[BrokerProcess, BrokerProcess],
    members: tuple[WireClient, WireClient],
) -> None:
    """PROTOCOL.md: ``unavailable`` means "nothing was sent".

    When Redis stalls past the publisher's 5 s timeout, the PUBLISH was
    already written and Redis runs it when it wakes, so the node cannot say
    nothing was sent: it answers ``internal`` (the outcome is unknown) and the
    message may or may not arrive, in order, before the sender's next one.
    """
    a, b = members
    stall = asyncio.create_task(asyncio.to_thread(redis_server.cli, "DEBUG", "SLEEP", "5.5"))
    try:
        await eventually(lambda: asyncio.to_thread(redis_is_stalled, redis_server), timeout=2)
        reply = await a.request("say", room=ROOM, body="maybe", timeout=REPLY_SECONDS)
        assert reply.get("code") == "internal", reply  # the publish timed out
        assert "may still reach" in reply["message"]
    finally:
        await stall
    await eventually(lambda: all_health(nodes, 200), timeout=RECOVERY_SECONDS)
    reply = await a.request("say", room=ROOM, body="after", timeout=REPLY_SECONDS)
    assert reply["type"] == "ok", reply

    # One sender's messages arrive in order: whatever came of "maybe" is here.
    bodies: list[Any] = []
    while not bodies or bodies[-1] != "after":
        event = await b.next_event(timeout=RECOVERY_SECONDS)
        if event["type"] == "message":
            bodies.append(event["body"])
    assert bodies in (["after"], ["maybe", "after"])
