"""Write-side flow control shared by the HTTP and WebSocket protocols.

The transport calls ``pause_writing`` when its buffer passes the high-water mark and
``resume_writing`` when it drains; an app's ``send()`` then awaits :meth:`drain` so a client that
does not read cannot make us buffer without bound.
"""

from __future__ import annotations

import asyncio
from typing import Any


class WriteFlowControl(asyncio.Protocol):
    __slots__ = ("_drain_waiter", "write_paused")

    # Provided by the protocol that inherits this.
    transport: Any
    loop: asyncio.AbstractEventLoop

    def init_write_flow(self) -> None:
        self.write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.release_drain()

    def release_drain(self) -> None:
        """Wake a waiting ``drain()``: writing resumed, or the connection is gone."""
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        """Wait until the client reads what we wrote (or goes away)."""
        if self.write_paused and self.transport is not None:
            self._drain_waiter = self.loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None
