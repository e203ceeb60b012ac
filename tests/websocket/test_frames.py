"""The framing shortcut: frame boundaries, and the same bytes out as the library alone.

The session reads and writes ordinary data frames itself and gives the websockets library
everything else as whole frames. Every stream below is run twice, with the shortcut and with
every byte going straight to the library, fed whole, a byte at a time and cut at random places;
the app's messages and every byte written must match exactly.
"""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest

from appserver.errors import ClientDisconnected
from appserver.websocket.frames import frame_bounds, server_frame_head
from appserver.websocket.session import WebSocketSession
from tests.websocket.helpers import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    close_payload,
    frame,
    make_session,
)

MASK = b"\x01\x02\x03\x04"


def test_frame_bounds_every_length_encoding() -> None:
    for payload_len, head_len in ((0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)):
        data = frame(BINARY, b"x" * payload_len)
        assert frame_bounds(data, 0) == (head_len + 4, payload_len)
        assert frame_bounds(b"junk" + data, 4) == (4 + head_len + 4, payload_len)
        for cut in range(head_len):  # the length is not all there yet
            assert frame_bounds(data[:cut], 0) == (-1, 0)
        for cut in range(head_len, head_len + 4):  # known length, masking key still coming
            assert frame_bounds(data[:cut], 0) == (head_len + 4, payload_len)
    unmasked = server_frame_head(0x81, 300) + b"y" * 300
    assert frame_bounds(unmasked, 0) == (4, 300)


def test_server_frame_head_exact_bytes() -> None:
    assert server_frame_head(0x81, 0) == b"\x81\x00"
    assert server_frame_head(0x82, 125) == b"\x82\x7d"
    assert server_frame_head(0x81, 126) == b"\x81\x7e\x00\x7e"
    assert server_frame_head(0x82, 65535) == b"\x82\x7e\xff\xff"
    assert server_frame_head(0x82, 65536) == b"\x82\x7f" + struct.pack("!Q", 65536)


def _with_first_byte(data: bytes, first: int) -> bytes:
    return bytes([first]) + data[1:]


def _long_form(payload: bytes) -> bytes:
    """A text frame whose length uses the 64-bit form although it is short."""
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return b"\x81\xff" + struct.pack("!Q", len(payload)) + MASK + masked


# name -> (client bytes, max_size)
STREAMS: dict[str, tuple[bytes, int]] = {
    "messages": (
        frame(TEXT, b"hello")
        + frame(BINARY, b"\x00\xff")
        + frame(TEXT, b"")
        + frame(TEXT, "h\u00e9llo \u20ac".encode())
        + frame(BINARY, bytes(range(256)) * 2)
        + frame(BINARY, b"z" * 65536)
        + _long_form(b"long form"),
        70000,
    ),
    "fragments-and-control": (
        frame(PING, b"p1")
        + frame(TEXT, b"ab", fin=False)
        + frame(PING, b"p2")
        + frame(CONT, b"cd", fin=False)
        + frame(PONG, b"unasked")
        + frame(CONT, b"ef")
        + frame(BINARY, b"after")
        + frame(PING, b"")
        + frame(TEXT, b"last"),
        1024,
    ),
    "invalid-utf8": (frame(TEXT, b"ok") + frame(TEXT, b"\xff\xfe") + frame(TEXT, b"lost"), 1024),
    "unmasked": (frame(TEXT, b"ok") + b"\x81\x02hi" + frame(TEXT, b"lost"), 1024),
    "rsv-bit": (_with_first_byte(frame(TEXT, b"hi"), 0xC1) + frame(TEXT, b"lost"), 1024),
    "reserved-opcode": (frame(0x3, b"hi") + frame(TEXT, b"lost"), 1024),
    "too-big": (frame(TEXT, b"ok") + frame(BINARY, b"x" * 1025) + frame(TEXT, b"lost"), 1024),
    "exactly-max-size": (frame(BINARY, b"x" * 1024) + frame(TEXT, b"next"), 1024),
    "big-header-only": (frame(TEXT, b"ok") + frame(BINARY, b"x" * 5000)[:14], 1024),
    "fragments-too-big": (
        frame(BINARY, b"x" * 600, fin=False) + frame(CONT, b"y" * 600) + frame(TEXT, b"lost"),
        1024,
    ),
    "data-inside-fragments": (frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), 1024),
    "stray-continuation": (frame(CONT, b"a") + frame(TEXT, b"lost"), 1024),
    "long-ping": (frame(PING, b"p" * 126) + frame(TEXT, b"lost"), 1024),
    "close-then-data": (
        frame(TEXT, b"before") + frame(CLOSE, close_payload(1001, b"bye")) + frame(TEXT, b"x"),
        1024,
    ),
    "bad-close-code": (frame(CLOSE, close_payload(999)) + frame(TEXT, b"lost"), 1024),
    "cut-short": (frame(TEXT, b"whole") + frame(TEXT, b"hello")[:-2], 1024),
}


def _pieces(data: bytes, mode: str) -> list[bytes]:
    if mode == "whole":
        return [data]
    if mode == "bytes":
        return [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(mode)
    count = 12 if mode.startswith("cuts") else 300
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, count)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def _run(
    data: bytes,
    max_size: int,
    mode: str,
    shortcut: bool,
    library_input: list[bytes] | None = None,
) -> tuple[list[Any], list[Any]]:
    """Feed ``data`` to an accepted session whose app echoes every message; record it all.

    ``library_input`` collects the frame bytes the websockets library is given.
    """
    session = make_session(max_size=max_size)
    session.shortcut = shortcut
    assert session.handshake()
    assert session.next_event() == {"type": "websocket.connect"}
    session.on_send({"type": "websocket.accept"})
    if library_input is not None:
        library_receive = session.protocol.receive_data

        def spy(data: bytes) -> None:
            library_input.append(bytes(data))
            library_receive(data)

        session.protocol.receive_data = spy  # type: ignore[method-assign]
    events: list[Any] = []
    out: list[Any] = [session.data_to_send()]

    def take(session: WebSocketSession) -> None:
        while session.queued:
            event = session.next_event()
            events.append(event)
            assert event is not None
            try:
                session.on_send(
                    {
                        "type": "websocket.send",
                        **{k: event[k] for k in event if k in ("text", "bytes")},
                    }
                )
            except ClientDisconnected as exc:
                events.append(f"send refused: {exc}")
        out.append(session.data_to_send())

    for piece in _pieces(data, mode):
        session.receive_data(piece)
        take(session)
    session.receive_eof()
    take(session)
    events.append(session.next_event())  # websocket.disconnect, with its code
    return events, out


@pytest.mark.parametrize("mode", ["whole", "bytes", "cuts-1", "cuts-2", "cuts-3"])
@pytest.mark.parametrize("name", sorted(STREAMS))
def test_shortcut_matches_the_library(name: str, mode: str) -> None:
    data, max_size = STREAMS[name]
    if mode == "bytes" and len(data) > 5000:
        data = data[:5000]  # a byte at a time through 65 KiB twice is slow and adds nothing
    with_shortcut = _run(data, max_size, mode, shortcut=True)
    library_only = _run(data, max_size, mode, shortcut=False)
    assert with_shortcut == library_only
    assert with_shortcut[1], "wrote nothing"


def test_shortcut_results_exactly() -> None:
    """Anchor the comparison: the expected messages and bytes, independent of either path."""
    data, max_size = STREAMS["fragments-and-control"]
    events, out = _run(data, max_size, "whole", shortcut=True)
    received = [e for e in events if e["type"] == "websocket.receive"]
    assert received == [
        {"type": "websocket.receive", "text": "abcdef"},
        {"type": "websocket.receive", "bytes": b"after"},
        {"type": "websocket.receive", "text": "last"},
    ]
    written = b"".join(data for data, _ in out[1:])
    assert written == (
        b"\x8a\x02p1\x8a\x02p2\x8a\x00"  # the pongs, as the frames were read
        + b"\x81\x06abcdef\x82\x05after\x81\x04last"  # then the app's echoes
    )
    assert events[-1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}

    events, out = _run(*STREAMS["invalid-utf8"], "whole", shortcut=True)
    assert events[0] == {"type": "websocket.receive", "text": "ok"}
    assert events[-1]["code"] == 1007
    assert events[1] == "send refused: the WebSocket connection is closing"
    assert out[1] == (b"\x88\x0f\x03\xefinvalid UTF-8", True)  # 1007, then close TCP


def _random_stream(rng: random.Random) -> tuple[bytes, bytes]:
    """Valid client traffic: messages of every length form, fragments, pings and pongs.

    Also returns the frames the library must be given: all but whole text and binary ones.
    """
    parts: list[bytes] = []
    library: list[bytes] = []
    for _ in range(rng.randint(5, 25)):
        kind = rng.choice(("text", "binary", "fragmented", "ping", "pong"))
        size = rng.choice((0, 1, 125, 126, 127, 300, 65535, 65536, 70000))
        body = bytes(rng.getrandbits(8) for _ in range(min(size, 64))) * (size // 64 + 1)
        body = body[:size]
        if kind == "text":
            parts.append(frame(TEXT, ("é" * size).encode()[: size - size % 2]))
        elif kind == "binary":
            parts.append(frame(BINARY, body))
        elif kind == "fragmented":
            for part in (
                frame(BINARY, body[:10], fin=False),
                frame(PING, b"mid"),
                frame(CONT, body[10:]),
            ):
                parts.append(part)
                library.append(part)
        else:
            part = frame(PING if kind == "ping" else PONG, body[:125])
            parts.append(part)
            library.append(part)
    return b"".join(parts), b"".join(library)


@pytest.mark.parametrize("seed", range(20))
def test_shortcut_matches_the_library_on_random_traffic(seed: int) -> None:
    rng = random.Random(seed)
    data, for_library = _random_stream(rng)
    mode = f"random-{seed}"
    given: list[bytes] = []
    with_shortcut = _run(data, 1 << 20, mode, shortcut=True, library_input=given)
    assert with_shortcut == _run(data, 1 << 20, mode, shortcut=False)
    # The shortcut took every whole message, and the library got all the rest, in order.
    assert b"".join(given) == for_library
