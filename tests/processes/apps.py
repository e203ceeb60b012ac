"""Apps for the worker-process tests."""

from __future__ import annotations

import os
import time
from typing import Any


async def app(scope: Any, receive: Any, send: Any) -> None:
    """Answers with the worker's pid; /hang blocks the event loop (a hung worker)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/hang":
        time.sleep(60)  # blocks the loop: the worker stops answering pings
    if scope["path"] == "/slow":
        import asyncio

        print("slow request begun", flush=True)
        await asyncio.sleep(60)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})


async def startup_fails(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})


async def environment(scope: Any, receive: Any, send: Any) -> None:
    """Answers with the GREETING variable (env_file tests)."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": os.environ.get("GREETING", "-").encode()})


async def slow_start(scope: Any, receive: Any, send: Any) -> None:
    """A lifespan startup that takes far longer than the test's timeout_worker_start."""
    if scope["type"] == "lifespan":
        import asyncio

        await receive()
        await asyncio.sleep(30)
        await send({"type": "lifespan.startup.complete"})
