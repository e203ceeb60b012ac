"""A loop factory named by a "module:callable" string (uvicorn's loop keyword)."""

from __future__ import annotations

import asyncio

made: list[asyncio.AbstractEventLoop] = []


def new_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    made.append(loop)
    return loop
