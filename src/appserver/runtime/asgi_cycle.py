"""The awaitable half of a request cycle: the ``receive`` and ``send`` an app is given.

:class:`ASGICycle` extends the sans-IO :class:`~appserver.http.cycle.RequestCycle` with the
awaiting: waiting for body bytes (on the connection's waiter), writing through the connection's
one write buffer, waiting for a slow client to drain. The connection
(:class:`~appserver.runtime.http_protocol.HTTPProtocol`) creates one per request.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

from appserver.http.cycle import RequestCycle, ResponseState
from appserver.runtime.connection import cancelled_by_peer

if TYPE_CHECKING:
    from appserver.runtime.http_protocol import HTTPProtocol


async def service_unavailable(scope: Any, receive: Any, send: Any) -> None:
    """The app that answers when limit_concurrency is reached."""
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": b"Service Unavailable"})


_STARTED: Final = ResponseState.STARTED
_DONE: Final = ResponseState.DONE


class ASGICycle(RequestCycle):
    """A request cycle with the awaitable ``receive`` and ``send`` the app is given.

    ``protocol`` is set by :meth:`HTTPProtocol.on_request` right after construction (cheaper
    than an ``__init__`` override on the hot path), ``task`` by the app runner.
    """

    # started_at .. quiet: set (all four) only by the instrumented protocol, for metrics and
    # the json/template access log; a slot unset costs nothing.
    __slots__ = ("protocol", "quiet", "received", "request_id", "sent_before", "started_at", "task")

    protocol: HTTPProtocol
    task: asyncio.Task[None]  # set by the connection's app runner
    received: int  # body bytes so far, counted only under limits.body_size
    # The instrumented protocol's (runtime/instrumented.py):
    started_at: float  # time.perf_counter() when the app was called
    sent_before: int  # bytes the connection had written by then
    request_id: str | None
    quiet: bool  # a probe: not in the access log

    async def receive(self) -> dict[str, Any]:
        message = self.next_event()
        protocol = self.protocol
        if message is None:
            pending = self.take_continue()
            if pending:
                protocol.write(pending, flush=True)
            protocol.maybe_resume_reading()
            if not self.request_complete:
                protocol.waiting_for_body()
            while message is None:
                try:
                    await protocol.wait()
                except asyncio.CancelledError:
                    if not cancelled_by_peer():
                        raise
                message = self.next_event()
        if protocol.read_paused:
            protocol.maybe_resume_reading()
        return message

    async def send(self, message: Any) -> None:
        data = self.on_send(message)
        state = self.response_state
        protocol = self.protocol
        if state is _DONE:
            protocol.write(data, flush=True)
            if protocol.waiter is not None:
                # Another coroutine of the app waits in receive() (Litestar's and Starlette's
                # disconnect listeners): the response is complete, so it gets http.disconnect.
                protocol.wake()
            protocol.response_complete(self)
        elif data:
            protocol.write(data, flush=False)
            if protocol.write_paused:
                await protocol.drain()
        elif state is _STARTED:
            # The head waits for the first body message so both go out in one write; if the
            # app pauses in between, the end-of-iteration flush sends the head alone.
            protocol.schedule_flush()
