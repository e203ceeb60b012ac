"""Event loop choice: uvloop when asked for or available, else asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from appserver.errors import StartupError


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if name == "uvloop":
                raise StartupError('loop = "uvloop" but uvloop is not installed') from None
        else:
            new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return new_loop
    return asyncio.new_event_loop
