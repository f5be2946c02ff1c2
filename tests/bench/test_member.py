"""A member checks every delivery; a publisher keeps its window and body size.

Frames are fed to the member as the WebSocket client would hand them over,
without a socket.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import msgspec

import protocol
from broker.bench.member import WARM_UP_REF, Member, Tally
from broker.bench.messages import WARM_UP_SEQ
from broker.bench.publisher import Publisher


def message(pub: int, seq: int, sent: int | None = None, **extra: Any) -> bytes:
    body = {"p": pub, "s": seq, "t": time.monotonic_ns() if sent is None else sent, "x": "pad"}
    return json.dumps(
        {"type": "message", "room": "r", "from": "s-1", "body": body, **extra}
    ).encode()


def member(publishers: list[int], messages: int) -> tuple[Member, Tally]:
    tally = Tally(expected=len(publishers) * messages, warm_expected=len(publishers))
    return Member("ws://127.0.0.1:1/ws", "r", publishers, messages, tally), tally


async def test_in_order_messages_count_once_each_and_finish_the_tally() -> None:
    m, tally = member([7, 8], 2)

    m.on_texts([message(7, 0), message(8, 0), message(7, 1)])
    assert not tally.done.is_set()
    m.on_texts([message(8, 1)])

    assert tally.delivered_count == 4
    assert tally.done.is_set()
    assert (tally.duplicates, tally.out_of_order, tally.unexpected) == (0, 0, 0)
    assert tally.hist.count == 4


async def test_a_repeated_message_is_a_duplicate_not_a_delivery() -> None:
    m, tally = member([7], 3)

    m.on_texts([message(7, 0), message(7, 1), message(7, 1), message(7, 0), message(7, 2)])

    assert tally.delivered_count == 3
    assert tally.duplicates == 2
    assert tally.out_of_order == 0


async def test_a_late_message_is_out_of_order_and_a_gap_is_missing() -> None:
    m, tally = member([7], 5)

    m.on_texts([message(7, 0), message(7, 2), message(7, 1), message(7, 4)])

    assert tally.delivered_count == 4
    assert tally.out_of_order == 1
    assert tally.expected - tally.delivered_count == 1  # seq 3 never came
    assert not tally.done.is_set()


async def test_messages_from_strangers_or_beyond_the_count_are_unexpected() -> None:
    m, tally = member([7], 2)

    m.on_texts([message(9, 0), message(7, 2), b'{"type":"message","room":"r","body":"hi"}'])

    assert tally.unexpected == 3
    assert tally.delivered_count == 0


async def test_a_bad_frame_does_not_hide_the_good_ones_around_it() -> None:
    m, tally = member([7], 2)

    m.on_texts([message(7, 0), b"{not json", message(7, 1)])

    assert tally.delivered_count == 2
    assert tally.unexpected == 1


async def test_warm_ups_are_counted_apart_from_deliveries() -> None:
    m, tally = member([7, 8], 1)

    m.on_texts([message(7, WARM_UP_SEQ)])
    assert not tally.warmed.is_set()
    m.on_texts([message(8, WARM_UP_SEQ), message(8, WARM_UP_SEQ)])

    assert tally.warmed.is_set()
    assert tally.duplicates == 1
    assert tally.delivered_count == 0


async def test_latency_is_the_receive_time_minus_the_send_time_in_the_body() -> None:
    m, tally = member([7], 1)

    m.on_texts([message(7, 0, sent=time.monotonic_ns() - 250_000_000)])

    assert 250_000 <= tally.hist.max < 260_000


async def test_events_and_pongs_are_ignored() -> None:
    m, tally = member([7], 1)

    m.on_texts(
        [
            b'{"type":"joined","room":"r","session":"s-2"}',
            b'{"type":"left","room":"r","session":"s-2"}',
            b'{"type":"pong","ref":null}',
        ]
    )

    assert (tally.unexpected, tally.delivered_count) == (0, 0)


class RecordingClient:
    """Stands in for the WebSocket client: records what is sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.payloads: list[bytes] = []
        self._changed = asyncio.Event()

    def send_text(self, payload: bytes) -> None:
        self.payloads.append(payload)
        self.sent.append(json.loads(payload))
        self._changed.set()

    async def wait_sent(self, count: int) -> None:
        """Wait until ``count`` frames have been sent."""
        async with asyncio.timeout(2):
            while len(self.sent) < count:
                self._changed.clear()
                await self._changed.wait()


async def test_a_publisher_keeps_at_most_window_says_without_a_reply() -> None:
    m, _ = member([], 0)
    client = RecordingClient()
    m.client = client  # type: ignore[assignment]
    publisher = Publisher(m, pub=3, messages=5, window=2, rate=None, phase=0.0, body_size=200)

    running = asyncio.create_task(publisher.run(time.monotonic_ns()))
    await client.wait_sent(2)
    # The publisher said two at once and now waits: a third needs a reply.
    assert [f["ref"] for f in client.sent] == [0, 1]
    m.on_texts([b'{"type":"ok","ref":0}'])
    await client.wait_sent(3)
    assert [f["ref"] for f in client.sent] == [0, 1, 2]
    m.on_texts([b'{"type":"ok","ref":1}', b'{"type":"ok","ref":2}'])
    await client.wait_sent(5)
    m.on_texts([b'{"type":"ok","ref":3}', b'{"type":"error","ref":4,"code":"x","message":""}'])
    await asyncio.wait_for(running, 1)

    assert [f["body"]["s"] for f in client.sent] == [0, 1, 2, 3, 4]
    assert all(f["type"] == "say" and f["room"] == "r" for f in client.sent)
    assert (publisher.says, publisher.acks, publisher.errors) == (5, 4, {"x": 1})


async def test_bodies_have_exactly_the_requested_size() -> None:
    m, _ = member([], 0)
    client = RecordingClient()
    m.client = client  # type: ignore[assignment]
    publisher = Publisher(m, pub=12, messages=0, window=1, rate=None, phase=0.0, body_size=200)

    publisher.say_warm_up()

    frame = client.sent[0]
    assert frame["ref"] == WARM_UP_REF  # its ok tells its offset, outside the window
    assert frame["body"]["s"] == WARM_UP_SEQ
    assert len(json.dumps(frame["body"], separators=(",", ":"))) == 200


async def test_a_paced_publisher_says_on_schedule() -> None:
    m, _ = member([], 0)
    client = RecordingClient()
    m.client = client  # type: ignore[assignment]
    publisher = Publisher(m, pub=0, messages=5, window=64, rate=100.0, phase=0.0, body_size=50)
    start = time.monotonic_ns()

    running = asyncio.create_task(publisher.run(start))
    await client.wait_sent(5)
    m.on_texts([f'{{"type":"ok","ref":{i}}}'.encode() for i in range(5)])
    await asyncio.wait_for(running, 1)

    # Each says at its due time (start + i * 10 ms), at most 1 ms early.
    for i, frame in enumerate(client.sent):
        due = start + i * 10_000_000
        assert due - 1_000_000 <= frame["body"]["t"] <= due


async def test_a_held_back_paced_say_is_stamped_with_its_due_time() -> None:
    m, _ = member([], 0)
    client = RecordingClient()
    m.client = client  # type: ignore[assignment]
    publisher = Publisher(m, pub=0, messages=2, window=1, rate=1000.0, phase=0.0, body_size=50)
    start = time.monotonic_ns()

    running = asyncio.create_task(publisher.run(start))
    await client.wait_sent(1)
    await asyncio.sleep(0.02)  # a slow broker: the reply comes 20 ms late
    m.on_texts([b'{"type":"ok","ref":0}'])
    await client.wait_sent(2)
    m.on_texts([b'{"type":"ok","ref":1}'])
    await asyncio.wait_for(running, 1)

    # Sent ~20 ms late, but its latency counts from when it was due (1 ms):
    # the delay the broker caused is measured, not omitted.
    assert client.sent[1]["body"]["t"] == start + 1_000_000
    assert publisher.max_lag_ns >= 19_000_000


async def test_says_are_the_protocols_say_requests() -> None:
    m, _ = member([], 0)
    client = RecordingClient()
    m.client = client  # type: ignore[assignment]
    publisher = Publisher(m, pub=3, messages=1, window=1, rate=None, phase=0.0, body_size=80)

    publisher.say_warm_up()
    running = asyncio.create_task(publisher.run(time.monotonic_ns()))
    await client.wait_sent(2)
    m.on_texts([protocol.encode(protocol.Ok(ref=0))])
    await asyncio.wait_for(running, 1)

    warm_up, say = (protocol.decode_request(p) for p in client.payloads)
    assert isinstance(warm_up, protocol.Say)
    assert isinstance(say, protocol.Say)
    assert (warm_up.room, warm_up.ref, say.room, say.ref) == ("r", WARM_UP_REF, "r", 0)


async def test_frames_the_protocol_encodes_are_read_as_the_server_sends_them() -> None:
    m, tally = member([7], 1)
    joined = protocol.encode(protocol.Joined(room="r", session="s-2"))
    said = msgspec.json.encode({"p": 7, "s": 0, "t": time.monotonic_ns()})
    delivery = protocol.Message(room="r", from_="s-7", body=msgspec.Raw(said), user="ann")

    m.on_texts([joined, protocol.encode(delivery)])

    assert (tally.delivered_count, tally.unexpected) == (1, 0)


def positioned(pub: int, seq: int, offset: int, epoch: str = "e-1") -> bytes:
    return message(pub, seq, offset=offset, epoch=epoch)


async def test_offsets_that_follow_the_join_position_are_clean() -> None:
    m, tally = member([7], 3)
    m.on_texts([b'{"type":"ok","ref":"join","offset":10,"epoch":"e-1"}'])

    m.on_texts([positioned(7, 0, 11), positioned(7, 1, 12), positioned(7, 2, 13)])

    assert tally.delivered_count == 3
    assert (m.offsets.gap_count(), m.offsets.backwards, tally.joins_with_position) == (0, 0, 1)


async def test_a_skipped_offset_is_a_gap_even_when_every_body_arrived() -> None:
    m, tally = member([7], 2)
    m.on_texts([b'{"type":"ok","ref":"join","offset":0,"epoch":"e-1"}'])

    m.on_texts([positioned(7, 0, 1), positioned(7, 1, 3)])

    assert tally.delivered_count == 2
    assert m.offsets.gap_count() == 1


async def test_a_repeated_offset_is_counted_backwards() -> None:
    m, _ = member([7, 8], 1)
    m.on_texts([b'{"type":"ok","ref":"join","offset":0,"epoch":"e-1"}'])

    m.on_texts([positioned(7, 0, 1), positioned(8, 0, 1)])

    assert m.offsets.backwards == 1


async def test_the_offset_of_an_own_say_is_no_gap() -> None:
    m, _ = member([7], 2)
    m.on_texts([b'{"type":"ok","ref":"join","offset":0,"epoch":"e-1"}'])

    m.on_texts([positioned(7, 0, 1), b'{"type":"ok","ref":0,"offset":2,"epoch":"e-1"}'])
    m.on_texts([positioned(7, 1, 3)])

    assert m.offsets.gap_count() == 0


async def test_the_warm_up_oks_offset_is_the_publishers_own() -> None:
    m, tally = member([7], 1)
    m.on_texts([b'{"type":"ok","ref":"join","offset":0,"epoch":"e-1"}'])

    m.on_texts([f'{{"type":"ok","ref":"{WARM_UP_REF}","offset":1,"epoch":"e-1"}}'.encode()])
    m.on_texts([positioned(7, WARM_UP_SEQ, 2), positioned(7, 0, 3)])

    assert tally.warmed.is_set()
    assert (m.offsets.gap_count(), tally.errors) == (0, {})


async def test_messages_without_positions_are_not_offset_checked() -> None:
    m, tally = member([7], 2)
    m.on_texts([b'{"type":"ok","ref":"join"}'])

    m.on_texts([message(7, 0), message(7, 1)])

    assert tally.delivered_count == 2
    assert (m.offsets.last, tally.joins_with_position) == (-1, 0)


async def test_an_unasked_history_reply_is_unexpected() -> None:
    m, tally = member([7], 1)

    m.on_texts([b'{"type":"history","ref":null,"room":"r","messages":[]}'])

    assert tally.unexpected == 1
