"""broker.frames: a server text frame is valid RFC 6455 framing (section 5.2)
at every payload-length boundary, as websockets' own parser reads it."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from broker.frames import text_frame


def parse(data: bytes) -> tuple[Frame, bytes]:
    """Parse one unmasked frame (as a client does); return it and what is left."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
    else:
        raise AssertionError("parser wants more bytes than the frame holds")
    return frame, bytes(reader.buffer)


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_parses_back_to_its_payload(length: int) -> None:
    payload = bytes(48 + i % 10 for i in range(length))
    frame, rest = parse(text_frame(payload))
    assert frame.opcode is Opcode.TEXT
    assert frame.fin
    assert not (frame.rsv1 or frame.rsv2 or frame.rsv3)
    assert frame.data == payload
    assert rest == b""


@pytest.mark.parametrize(
    ("length", "header_size"),
    [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)],
)
def test_header_uses_the_shortest_length_encoding(length: int, header_size: int) -> None:
    # RFC 6455 5.2: "the minimal number of bytes MUST be used to encode the length".
    assert len(text_frame(b"x" * length)) == header_size + length


def test_frame_is_not_masked() -> None:
    # RFC 6455 5.1: a server MUST NOT mask frames it sends.
    assert text_frame(b"hello")[1] & 0x80 == 0


def test_frames_concatenate_into_a_stream() -> None:
    first, rest = parse(text_frame(b"one") + text_frame(b"two"))
    second, rest = parse(rest)
    assert (first.data, second.data, rest) == (b"one", b"two", b"")
