"""Keep-alive timeouts: one loop timer for all the connections of a server.

Each connection arms one timeout (see ``HTTPProtocol._set_idle``), and an idle keep-alive
connection holds it for as long as it stays open. On uvloop a timer from ``loop.call_at`` costs
about 0.6 KiB (TimerHandle, UVTimer, the Context it copies, a bound method, libuv's uv_timer_t):
with a thousand idle connections, a fifth of what each one costs. Here a timeout is one small
heap entry, and the loop holds a single timer for the earliest of them, as asyncio's own loop
keeps its scheduled callbacks in a heap (``BaseEventLoop._scheduled``). Cancelled entries stay
in the heap, holding nothing, until they come up or until they are the majority and the heap is
rebuilt without them (asyncio's rule too).
"""

from __future__ import annotations

import asyncio
import heapq
from typing import Protocol

from appserver.runtime.logs import logger

# Rebuild the heap when more than this many entries, and more than half of them, are cancelled
# (asyncio's _MIN_SCHEDULED_TIMER_HANDLES and _MIN_CANCELLED_TIMER_HANDLES_FRACTION).
_MIN_CANCELLED = 100


class Expiring(Protocol):
    def check_idle(self) -> None:
        """Called once the timeout's time has come."""


class Timeout:
    """One armed timeout; ``cancel()`` it through :meth:`KeepAliveTimers.cancel`."""

    __slots__ = ("conn", "when")

    def __init__(self, when: float, conn: Expiring) -> None:
        self.when = when
        self.conn: Expiring | None = conn  # None once cancelled or run

    def __lt__(self, other: Timeout) -> bool:
        return self.when < other.when


class KeepAliveTimers:
    """The timeouts of every connection of one server, on one loop."""

    __slots__ = ("_cancelled", "_heap", "_timer", "_timer_when", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._heap: list[Timeout] = []
        self._cancelled = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0

    def call_at(self, when: float, conn: Expiring) -> Timeout:
        """Call ``conn.check_idle()`` at loop time ``when`` (unless cancelled first)."""
        timeout = Timeout(when, conn)
        heapq.heappush(self._heap, timeout)
        if self._timer is None or when < self._timer_when:
            self._arm(when)
        return timeout

    def cancel(self, timeout: Timeout) -> None:
        if timeout.conn is None:
            return
        timeout.conn = None  # the connection can go now, not when the entry comes up
        self._cancelled += 1
        heap = self._heap
        if self._cancelled > _MIN_CANCELLED and self._cancelled * 2 > len(heap):
            self._heap = [entry for entry in heap if entry.conn is not None]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def __len__(self) -> int:
        """Armed timeouts, cancelled ones not counted."""
        return len(self._heap) - self._cancelled

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._run)
        self._timer_when = when

    def _run(self) -> None:
        self._timer = None
        now = self.loop.time()
        # self._heap, not a local: a callback that cancels may have it rebuilt.
        while self._heap and self._heap[0].when <= now:
            timeout = heapq.heappop(self._heap)
            conn = timeout.conn
            if conn is None:
                self._cancelled -= 1
                continue
            timeout.conn = None
            try:
                conn.check_idle()  # may arm a timeout again, and with it the loop timer
            except Exception:
                # One connection's failure must not leave every later timeout unarmed.
                logger.exception("Error in a keep-alive timeout")
        heap = self._heap
        if heap and (self._timer is None or heap[0].when < self._timer_when):
            self._arm(heap[0].when)
