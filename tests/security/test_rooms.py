"""Room rights and the ``user`` field with real clients on a node that
requires tokens (docs/PROTOCOL-ADDITIONS.md, "Room rights", "user")."""

from __future__ import annotations

from tests.conftest import ClientFactory
from tests.security.tokens import hs256, rooms
from tests.support.processes import BrokerProcess
from tests.support.wire import WireClient


async def connect_as(
    wire: ClientFactory, node: BrokerProcess, user: str, *grants: tuple[str, str]
) -> WireClient:
    token = hs256(sub=user, rooms=rooms(*grants)) if grants else hs256(sub=user)
    return await wire(f"{node.url}?token={token}")


async def test_join_of_a_room_not_granted_is_forbidden(
    secured: BrokerProcess, wire: ClientFactory
) -> None:
    client = await connect_as(wire, secured, "alice", ("lobby", "join say"))
    reply = await client.request("join", room="kitchen")
    assert (reply["type"], reply["code"]) == ("error", "forbidden")


async def test_say_without_the_say_right_is_forbidden(
    secured: BrokerProcess, wire: ClientFactory
) -> None:
    client = await connect_as(wire, secured, "alice", ("announcements", "join"))
    await client.join("announcements")
    reply = await client.request("say", room="announcements", body="hi")
    assert (reply["type"], reply["code"]) == ("error", "forbidden")


async def test_prefix_grant_covers_rooms_under_it_but_not_team_420(
    secured: BrokerProcess, wire: ClientFactory
) -> None:
    client = await connect_as(wire, secured, "alice", ("team:42:*", "join say"))
    await client.join("team:42:chat")
    reply = await client.request("join", room="team:420")
    assert (reply["type"], reply["code"]) == ("error", "forbidden")


async def test_forbidden_join_leaves_the_other_members_undisturbed(
    secured: BrokerProcess, wire: ClientFactory
) -> None:
    member = await connect_as(wire, secured, "alice", ("vault", "join"))
    intruder = await connect_as(wire, secured, "mallory", ("lobby", "join"))
    await member.join("vault")
    await intruder.request("join", room="vault")
    await member.expect_silence()


async def test_user_is_on_welcome_joined_message_and_left(
    secured: BrokerProcess, wire: ClientFactory
) -> None:
    alice = await connect_as(wire, secured, "alice")
    bob = await connect_as(wire, secured, "bob")
    assert (alice.welcome["user"], bob.welcome["user"]) == ("alice", "bob")
    await alice.join("users")
    await bob.join("users")
    await alice.expect("joined", room="users", session=bob.session, user="bob")

    await bob.say("users", "hello")
    await alice.expect("message", room="users", body="hello", user="bob")

    await bob.request("leave", room="users")
    await alice.expect("left", room="users", session=bob.session, user="bob")
