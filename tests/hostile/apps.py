"""Apps for the hostile-client tests, served in a subprocess (``tests.hostile.apps:app``)."""

from __future__ import annotations

from typing import Any

KIB64 = b"x" * 65536


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/huge":  # 50 MiB, streamed
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(800):
            await send({"type": "http.response.body", "body": KIB64, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/echo":
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message["body"])
            if not message["more_body"]:
                break
        body = b"%d" % size
    elif path == "/64k":
        body = KIB64
    else:  # "/" and "/ignore": answer without reading any body
        body = b"ok"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
