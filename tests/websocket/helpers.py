"""Shared pieces for the WebSocket tests: an in-process server and a raw-frame client."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from typing import Any

from appserver.http.cycle import ConnectionInfo, DefaultHeaders, RequestCycle
from appserver.websocket.session import WebSocketSession
from tests.conftest import run, serve

TIMEOUT = 10
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example key

__all__ = ["TIMEOUT", "run", "serve"]


def handshake_request(
    path: str = "/", extra: bytes = b"", key: bytes | None = None
) -> tuple[bytes, bytes]:
    key = key or base64.b64encode(os.urandom(16))
    request = (
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
    )
    return request, key


def frame(
    opcode: int, payload: bytes, fin: bool = True, mask: bytes = b"\x01\x02\x03\x04"
) -> bytes:
    """A client frame, masked as RFC 6455 §5.3 requires; written here, not by the library."""
    head = bytes([(0x80 if fin else 0) | opcode])
    length = len(payload)
    if length < 126:
        head += bytes([0x80 | length])
    elif length < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", length)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return head + mask + masked


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


class RawClient:
    """A WebSocket client on a bare TCP connection: bytes out, frames in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def handshake(self, path: str = "/", extra: bytes = b"") -> bytes:
        request, _ = handshake_request(path, extra)
        self.writer.write(request)
        return await self.read_head()

    async def read_head(self) -> bytes:
        return await self.reader.readuntil(b"\r\n\r\n")

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def recv_frame(self) -> tuple[bool, int, bytes]:
        """(fin, opcode, payload) of the next server frame; server frames are never masked."""
        first, second = await self.reader.readexactly(2)
        assert not second & 0x80, "server frames must not be masked"
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        payload = await self.reader.readexactly(length)
        return bool(first & 0x80), first & 0x0F, payload

    async def at_eof(self) -> bool:
        return await self.reader.read() == b""

    def close(self) -> None:
        self.writer.close()


TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


async def echo_app(scope: Any, receive: Any, send: Any) -> None:
    """Accepts (echoing the first subprotocol offered) and echoes every message."""
    assert scope["type"] == "websocket"
    message = await receive()
    assert message["type"] == "websocket.connect"
    subprotocols = scope["subprotocols"]
    await send(
        {"type": "websocket.accept", "subprotocol": subprotocols[0] if subprotocols else None}
    )
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


def accept_then_record(record: list[dict[str, Any]]) -> Any:
    """An app that accepts, then appends the next message it receives to ``record``."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        record.append(await receive())

    return app


def make_session(
    scheme: str = "http",
    extra: list[tuple[bytes, bytes]] | None = None,
    max_size: int = 1024,
) -> WebSocketSession:
    """A sans-IO session for a valid handshake request (no loop, no socket)."""
    info = ConnectionInfo(
        server=("127.0.0.1", 8000),
        client=("127.0.0.1", 5000),
        scheme=scheme,
        root_path="",
        defaults=DefaultHeaders([(b"server", b"appserver")]),
    )
    headers = [
        (b"host", b"example.com"),
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-key", KEY),
        (b"sec-websocket-version", b"13"),
        *(extra or []),
    ]
    cycle = RequestCycle(info, b"GET", b"/chat?x=1", "1.1", headers)
    cycle.end_request()
    return WebSocketSession(cycle, max_size=max_size, per_message_deflate=False)
