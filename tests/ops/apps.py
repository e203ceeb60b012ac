"""Apps for the operations tests."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.lifecycle.apps import _lifespan
from tests.websocket.helpers import echo_app


async def hello(scope: Any, receive: Any, send: Any) -> None:
    """Lifespan as tests/lifecycle's apps do, a WebSocket echo as tests/websocket's, and
    HTTP: "app <path>" (/slow waits first)."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] == "websocket":
        await echo_app(scope, receive, send)
        return
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
