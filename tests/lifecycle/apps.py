"""Small ASGI apps for the subprocess tests. Each prints its lifespan events to stdout."""

from __future__ import annotations

import asyncio
import os
from typing import Any
from urllib.parse import parse_qs


def say(text: str) -> None:
    print(text, flush=True)


async def _text(send: Any, body: bytes, status: int = 200) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Any, send: Any, startup_delay: float = 0.0) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            say("lifespan startup begun")
            await asyncio.sleep(startup_delay)
            say("lifespan startup done")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            say("lifespan shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def slow(scope: Any, receive: Any, send: Any) -> None:
    """``/`` answers at once; ``/slow?s=N`` answers after N seconds (default 2)."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["path"] == "/slow":
        seconds = float(parse_qs(scope["query_string"].decode()).get("s", ["2"])[0])
        say(f"slow request begun ({seconds} s)")
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            say("slow request cancelled")
            raise
        await _text(send, b"slow done")
        say("slow request done")
        return
    await _text(send, b"hello")


async def slow_startup(scope: Any, receive: Any, send: Any) -> None:
    """Lifespan startup takes 2 seconds."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send, startup_delay=2.0)
        return
    say("request served")
    await _text(send, b"hello")


async def startup_fails(scope: Any, receive: Any, send: Any) -> None:
    """Lifespan startup reports failure; any request served is a bug."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        return
    say("request served")
    await _text(send, b"should not be served")


async def stuck_lifespan(scope: Any, receive: Any, send: Any) -> None:
    """Lifespan startup or shutdown never completes (STUCK="startup" or "shutdown")."""
    if scope["type"] != "lifespan":
        await _text(send, b"hello")
        return
    stuck = os.environ.get("STUCK", "shutdown")
    await receive()
    if stuck == "startup":
        say("startup stuck")
        await asyncio.Event().wait()
    await send({"type": "lifespan.startup.complete"})
    await receive()
    say("shutdown stuck")
    await asyncio.Event().wait()
