"""``broker say``, ``broker listen``, ``broker chat`` and ``broker who`` run
as users run them: subprocesses against a real memory node."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from roomcast_client import Position, connect, decode_body
from tests.conftest import BrokerFactory
from tests.sdk.conftest import SdkFactory, next_message
from tests.security.tokens import SECRET, hs256, rooms
from tests.support.processes import REPO, BrokerProcess, free_port


class Tool:
    """One ``python -m broker ...`` subprocess with piped stdio."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self, stream: str = "stdout", timeout: float = 10.0) -> str:
        """The next line of ``stream``, without its newline."""
        reader = self.process.stdout if stream == "stdout" else self.process.stderr
        assert reader is not None
        raw = await asyncio.wait_for(reader.readline(), timeout)
        assert raw, f"{stream} ended"
        return raw.decode().rstrip("\n")

    async def event(self) -> dict[str, Any]:
        """The next stdout line, parsed as one JSON object."""
        parsed: dict[str, Any] = json.loads(await self.line())
        return parsed

    def write(self, text: str) -> None:
        """Type ``text`` on the tool's stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode())

    async def finish(self, timeout: float = 15.0) -> tuple[int, str, str]:
        """Close stdin, wait for the exit; (exit code, rest of stdout, rest of stderr)."""
        if self.process.stdin is not None:
            self.process.stdin.close()  # communicate() without input leaves it open
        out, err = await asyncio.wait_for(self.process.communicate(), timeout)
        assert self.process.returncode is not None
        return self.process.returncode, out.decode(), err.decode()


ToolFactory = Callable[..., Awaitable[Tool]]


@pytest.fixture
async def tool() -> AsyncIterator[ToolFactory]:
    """Start ``broker`` subcommands: ``await tool("say", url, ...)``; all ended at the end."""
    started: list[Tool] = []

    async def start(*args: str, stdin: bool = False) -> Tool:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "broker",
            *args,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
        started.append(Tool(process))
        return started[-1]

    yield start
    for one in started:
        if one.process.returncode is None:
            one.process.kill()
        await one.process.communicate()


@pytest.fixture
def memory_node(broker: BrokerFactory) -> BrokerProcess:
    """One in-memory node."""
    return broker()


async def test_say_exits_0_once_the_json_body_is_accepted(
    memory_node: BrokerProcess, sdk: SdkFactory, tool: ToolFactory
) -> None:
    listener = await sdk(memory_node.url)
    await listener.join("news")

    said = await tool("say", memory_node.url, "news", '{"headline": "tests pass"}')

    assert await said.finish() == (0, "", "")
    message = await asyncio.wait_for(next_message(listener), 5)
    assert decode_body(message) == {"headline": "tests pass"}


async def test_say_sends_a_body_that_is_not_json_as_a_string(
    memory_node: BrokerProcess, sdk: SdkFactory, tool: ToolFactory
) -> None:
    listener = await sdk(memory_node.url)
    await listener.join("news")

    said = await tool("say", memory_node.url, "news", "plain words")

    assert (await said.finish())[0] == 0
    message = await asyncio.wait_for(next_message(listener), 5)
    assert decode_body(message) == "plain words"


async def test_say_exits_2_with_the_error_code_on_stderr(
    memory_node: BrokerProcess, tool: ToolFactory
) -> None:
    said = await tool("say", memory_node.url, "no spaces", "x")

    code, out, err = await said.finish()

    assert (code, out) == (2, "")
    assert err.startswith("broker say: bad_room: ")


async def test_say_exits_2_when_no_broker_answers(tool: ToolFactory) -> None:
    said = await tool("say", f"ws://127.0.0.1:{free_port()}/ws", "news", "x", "--timeout", "2")

    code, _, err = await said.finish()

    assert code == 2
    assert "connect_failed" in err


def _at(position: Position) -> dict[str, Any]:
    """The position fields a ``message`` frame carries (HISTORY-PRESENCE.md, "Positions")."""
    return {"offset": position.offset, "epoch": position.epoch}


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
async def test_listen_json_prints_one_event_per_line_until_signalled(
    memory_node: BrokerProcess, sdk: SdkFactory, tool: ToolFactory, stop_signal: signal.Signals
) -> None:
    listening = await tool("listen", memory_node.url, "a", "b", "--json")
    assert (await listening.line("stderr")).startswith("broker listen: in a, b as s-")
    speaker = await sdk(memory_node.url)

    await speaker.join("a")
    await speaker.join("b")
    in_a = await speaker.say("a", {"n": 1})
    in_b = await speaker.say("b", "two")
    await speaker.leave("a")

    who = speaker.session
    assert in_a is not None and in_b is not None
    assert [await listening.event() for _ in range(5)] == [
        {"type": "joined", "room": "a", "session": who},
        {"type": "joined", "room": "b", "session": who},
        {"type": "message", "room": "a", "from": who, "body": {"n": 1}, **_at(in_a)},
        {"type": "message", "room": "b", "from": who, "body": "two", **_at(in_b)},
        {"type": "left", "room": "a", "session": who},
    ]
    listening.process.send_signal(stop_signal)
    assert (await listening.finish())[0] == 0


async def test_listen_prints_readable_lines_by_default(
    memory_node: BrokerProcess, sdk: SdkFactory, tool: ToolFactory
) -> None:
    listening = await tool("listen", memory_node.url, "a")
    await listening.line("stderr")
    speaker = await sdk(memory_node.url)

    await speaker.join("a")
    await speaker.say("a", {"text": "hello", "name": "bo"})

    assert await listening.line() == f"[a] * {speaker.session} joined"
    assert await listening.line() == f"[a] bo ({speaker.session}): hello"


async def test_chat_says_typed_lines_prints_others_and_leaves_on_eof(
    memory_node: BrokerProcess, sdk: SdkFactory, tool: ToolFactory
) -> None:
    listening = await tool("listen", memory_node.url, "lobby", "--json")
    await listening.line("stderr")
    chatting = await tool("chat", memory_node.url, "--room", "lobby", "--name", "ann", stdin=True)
    assert (await chatting.line("stderr")).startswith("* in lobby as s-")
    joined = await listening.event()
    assert joined["type"] == "joined"
    ann = joined["session"]

    chatting.write("hello there\n")
    heard = await listening.event()
    assert {key: heard.pop(key) for key in ("offset", "epoch")}["offset"] == 1
    assert heard == {
        "type": "message",
        "room": "lobby",
        "from": ann,
        "body": {"text": "hello there", "name": "ann"},
    }

    bob = await sdk(memory_node.url)
    await bob.join("lobby")
    await bob.say("lobby", {"text": "hi ann", "name": "bob"})
    assert await chatting.line() == f"[lobby] * {bob.session} joined"
    assert await chatting.line() == f"[lobby] bob ({bob.session}): hi ann"

    code, _, err = await chatting.finish()  # closes stdin: Ctrl-D
    assert code == 0, err
    after_ann_said = [await listening.event() for _ in range(3)]
    assert [(e["type"], e.get("session") or e.get("from")) for e in after_ann_said] == [
        ("joined", bob.session),
        ("message", bob.session),
        ("left", ann),
    ]


def test_parsing_arguments_loads_no_client_code() -> None:
    code = (
        "import sys, broker.cli\n"
        "broker.cli.build_parser()\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m.startswith('roomcast_client') or m == 'broker.commands.tools'))\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=30
    )

    assert result.stdout.strip() == "[]", result.stderr


async def test_say_presents_its_token_and_reports_forbidden(
    broker: BrokerFactory, tool: ToolFactory
) -> None:
    secured = broker("--jwt-secret", SECRET)
    allowed = await tool("say", secured.url, "lobby", "hi", "--token", hs256())
    read_only = hs256(rooms=rooms(("lobby", "join")))
    refused = await tool("say", secured.url, "lobby", "hi", "--token", read_only)

    assert (await allowed.finish())[0] == 0
    code, _, err = await refused.finish()
    assert code == 2
    assert err.startswith("broker say: forbidden: ")


async def test_say_without_a_token_prints_the_brokers_reason_and_the_fix(
    broker: BrokerFactory, tool: ToolFactory
) -> None:
    secured = broker("--jwt-secret", SECRET)

    said = await tool("say", secured.url, "lobby", "hi")

    assert await said.finish() == (
        2,
        "",
        "broker say: refused (401): a token is required; pass --token or set BROKER_TOKEN\n",
    )


async def test_listen_with_a_bad_token_prints_the_brokers_reason_and_the_fix(
    broker: BrokerFactory, tool: ToolFactory
) -> None:
    secured = broker("--jwt-secret", SECRET)

    listening = await tool("listen", secured.url, "lobby", "--token", hs256(key=SECRET[::-1]))

    code, _, err = await listening.finish()
    assert code == 2
    assert err == (
        "broker listen: refused (401): bad token signature; "
        "pass a valid, unexpired token with --token or BROKER_TOKEN\n"
    )


async def test_who_prints_each_member_then_the_counts_with_its_own_session(
    memory_node: BrokerProcess, sdk: SdkFactory, tool: ToolFactory
) -> None:
    alice = await sdk(memory_node.url)
    await alice.join("lobby")

    code, out, err = await (await tool("who", memory_node.url, "lobby")).finish()

    assert (code, err) == (0, "")
    *members, counts = out.splitlines()
    asker = counts.removeprefix("2 sessions, 0 users (this tool's session ").removesuffix(
        " included)"
    )
    assert asker.startswith("s-") and " " not in asker, counts
    assert sorted(members) == sorted([f"{alice.session} -", f"{asker} -"])


async def test_who_shows_each_members_user(broker: BrokerFactory, tool: ToolFactory) -> None:
    secured = broker("--jwt-secret", SECRET)
    async with connect(secured.url, token=hs256(sub="alice")) as alice:
        await alice.join("team")

        who = await tool("who", secured.url, "team", "--token", hs256(sub="ops"))
        code, out, _ = await who.finish()

    assert code == 0
    assert f"{alice.session} alice" in out.splitlines()
    assert out.splitlines()[-1].startswith("2 sessions, 2 users (")


async def test_who_json_prints_the_reply_as_the_http_api_does(
    memory_node: BrokerProcess, sdk: SdkFactory, tool: ToolFactory
) -> None:
    alice = await sdk(memory_node.url)
    await alice.join("lobby")

    code, out, _ = await (await tool("who", memory_node.url, "lobby", "--json")).finish()

    assert code == 0
    reply = json.loads(out)
    members = reply.pop("members")
    assert reply == {"room": "lobby", "count": 2, "users": 0}
    assert {"session": alice.session} in members
    assert len(members) == 2


async def test_who_exits_2_with_the_error_code_on_stderr(
    memory_node: BrokerProcess, tool: ToolFactory
) -> None:
    code, out, err = await (await tool("who", memory_node.url, "no spaces")).finish()

    assert (code, out) == (2, "")
    assert err.startswith("broker who: bad_room: ")
    assert err.count("\n") == 1
