"""Event loop choice: uvloop when asked for or available, else asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from appserver.errors import StartupError


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The factory of the loop ``name`` says: uvloop for "auto" (when installed) and "uvloop",
    asyncio's for "asyncio" and "none", or the callable a "module:callable" string names."""
    if ":" in name:
        from appserver.runtime.loader import import_from_string

        try:
            factory = import_from_string(name)
        except Exception as exc:
            raise StartupError(f"loop = {name!r}: {exc}") from None
        if not callable(factory):
            raise StartupError(f"loop = {name!r} is not callable")
        named: Callable[[], asyncio.AbstractEventLoop] = factory
        return named
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
