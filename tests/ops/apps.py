"""Apps for the operations tests."""

from __future__ import annotations

import asyncio
from typing import Any


async def hello(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text") or ""})
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(float(scope["query_string"] or b"0.5"))
    body = f"app {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def scope_echo(scope: Any, receive: Any, send: Any) -> None:
    """Answers with what the server put in the scope: client, scheme, server, host header."""
    import json

    if scope["type"] != "http":
        return
    host = next((v.decode() for k, v in scope["headers"] if k == b"host"), None)
    body = json.dumps(
        {
            "client": list(scope["client"]) if scope["client"] else None,
            "scheme": scope["scheme"],
            "server": list(scope["server"]) if scope["server"] else None,
            "host": host,
            "hosts": [v.decode() for k, v in scope["headers"] if k == b"host"],
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
