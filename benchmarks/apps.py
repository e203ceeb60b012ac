"""Plain ASGI apps served by both servers in the benchmark (the very same objects).

Nothing here depends on either server, so a difference in the numbers is the server's.
"""

from __future__ import annotations

from typing import Any

Scope = dict[str, Any]
Receive = Any
Send = Any

HELLO_BODY = b"Hello, world!"  # 13 bytes
BIG_BODY = b"x" * (64 * 1024)
STREAM_CHUNK = b"y" * 1024
STREAM_CHUNKS = 10

_TEXT = [(b"content-type", b"text/plain")]


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    """13-byte text response with a Content-Length."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*_TEXT, (b"content-length", b"13")],
        }
    )
    await send({"type": "http.response.body", "body": HELLO_BODY})


async def big(scope: Scope, receive: Receive, send: Send) -> None:
    """64 KiB response with a Content-Length."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(len(BIG_BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BIG_BODY})


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Read the whole request body, then send it back."""
    if scope["type"] != "http":
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def stream(scope: Scope, receive: Receive, send: Send) -> None:
    """Ten 1 KiB chunks without a Content-Length (chunked transfer encoding)."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": _TEXT})
    for _ in range(STREAM_CHUNKS - 1):
        await send({"type": "http.response.body", "body": STREAM_CHUNK, "more_body": True})
    await send({"type": "http.response.body", "body": STREAM_CHUNK})


async def ws_echo(scope: Scope, receive: Receive, send: Send) -> None:
    """WebSocket echo; plain HTTP requests get the hello response (used to probe the port)."""
    if scope["type"] == "http":
        await hello(scope, receive, send)
        return
    if scope["type"] != "websocket":
        return
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif kind == "websocket.receive":
            if message.get("bytes") is not None:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
            else:
                await send({"type": "websocket.send", "text": message.get("text") or ""})
        elif kind == "websocket.disconnect":
            return


APPS = {"hello": hello, "big": big, "echo": echo, "stream": stream, "ws_echo": ws_echo}
