"""The asyncio side of WebSockets: owns the transport after the HTTP protocol switched.

``HTTPProtocol`` parses the handshake request, then hands the transport, the request cycle
and whatever bytes followed the request to :meth:`WebSocketProtocol.take_over`; this object
becomes the transport's protocol (``transport.set_protocol``) and the member of
``ServerState.connections``. Protocol logic lives in :mod:`appserver.websocket.session`
(sans-IO); this module only moves bytes, runs the app, and keeps the timers:

* every write goes through :meth:`flush`, the one place that calls ``transport.write``;
* while received messages still wait for the app, its replies are held back and written
  together (one write for the batch, not one per message); see :meth:`flush`;
* reading pauses while ``ws_max_queue`` received messages wait for the app;
* ``send()`` waits for the transport to drain when the client reads slowly;
* a keepalive ping every ``ws_ping_interval``, failing with 1011 after ``ws_ping_timeout``;
* after we send a close frame, the client has ``CLOSE_TIMEOUT`` seconds to answer it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from appserver.errors import ClientDisconnected
from appserver.http.response import simple_response
from appserver.runtime.flow import WriteFlowControl
from appserver.runtime.logs import logger
from appserver.websocket.session import SessionState, WebSocketSession

if TYPE_CHECKING:
    from appserver.config.model import Config
    from appserver.http.cycle import RequestCycle
    from appserver.runtime.state import ServerState

# How long the client has to answer our close frame before we drop the TCP connection
# (websockets' own close_timeout default).
CLOSE_TIMEOUT = 10.0

# Once replies held back for one write reach this many bytes they go out at once (with the
# reply that crossed it), so an app sending big messages in a loop still meets the transport's
# flow control.
COALESCE_LIMIT = 64 * 1024


class WebSocketProtocol(WriteFlowControl):
    """One upgraded client connection. Built by the HTTP protocol; see the module docstring."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.config = config
        self.app = config.loaded_app
        self.server_state = server_state
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.session: WebSocketSession | None = None
        self.max_queue = config.ws_max_queue
        self.read_paused = False
        self.init_write_flow()
        self._waiter: asyncio.Future[None] | None = None
        self._held: list[bytes] = []  # replies held back by flush(hold=True)
        self._held_size = 0
        self._held_flush: asyncio.Handle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None

    def take_over(
        self,
        transport: asyncio.Transport,
        cycle: RequestCycle,
        trailing: bytes,
        read_paused: bool = False,
    ) -> None:
        """Become the connection's protocol, check the handshake, start the app."""
        self.transport = transport
        transport.set_protocol(self)
        self.server_state.connections.add(self)
        self.server_state.total_requests += 1
        if read_paused:
            transport.resume_reading()
        config = self.config
        session = self.session = WebSocketSession(
            cycle, max_size=config.ws_max_size, per_message_deflate=config.ws_per_message_deflate
        )
        limit = config.limit_concurrency
        state = self.server_state
        if limit is not None and (len(state.connections) > limit or len(state.tasks) >= limit):
            session.end_with(simple_response(503, b"Service Unavailable", cycle.defaults.encoded))
            self.flush()
            return
        if not session.handshake():
            self.flush()
            return
        task = self.loop.create_task(self._run(session))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
        if trailing:
            self.data_received(trailing)

    # --- asyncio.Protocol ------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        session = self.session
        assert session is not None
        session.receive_data(data)
        self.flush()
        self._wake()
        if session.queued >= self.max_queue and not self.read_paused:
            # Back-pressure: the app is not keeping up; let TCP push back on the client.
            self.read_paused = True
            if self.transport is not None:
                self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        session = self.session
        assert session is not None
        session.receive_eof()
        self.flush()
        self._wake()
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self.transport = None
        for timer in (self._ping_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._close_timer = None
        self._held.clear()
        self._held_size = 0
        if self.session is not None:
            self.session.connection_lost()
        self._wake()
        self.release_drain()

    # --- the one flush point ---------------------------------------------------------------------
    def flush(self, hold: bool = False) -> None:
        """Write whatever the session has for the network; close the transport when it says.

        ``hold``: the app is answering one of several messages that arrived together and will
        answer the rest before it waits again, so keep this reply for one write with the others
        (a write is a syscall, and it dominates the cost of a small message). The last reply of
        the batch, a later flush, or the end of this loop iteration writes what was held.
        """
        session = self.session
        transport = self.transport
        if session is None or transport is None:
            return
        data, close = session.data_to_send()
        held = self._held
        if hold and not close:
            if data:
                held.append(data)
                self._held_size += len(data)
            if self._held_size < COALESCE_LIMIT:
                if self._held_flush is None and held:
                    self._held_flush = self.loop.call_soon(self._flush_held)
                return
            data = b""  # it is in held already, and held is over the limit: write it all
        if held:
            if data:
                held.append(data)
            data = b"".join(held)
            held.clear()
            self._held_size = 0
        if data:
            transport.write(data)
        if close:
            transport.close()
        elif self._close_timer is None and session.close_expected():
            self._close_timer = self.loop.call_later(CLOSE_TIMEOUT, self._close_timed_out)
            if self.read_paused:
                # The client's answering close frame is behind the messages we left unread;
                # no message matters any more, so read on and let the handshake finish.
                self.read_paused = False
                transport.resume_reading()

    def _flush_held(self) -> None:
        self._held_flush = None
        if self._held:
            self.flush()

    def _close_timed_out(self) -> None:
        self._close_timer = None
        self._drop()

    def _drop(self) -> None:
        """Close the TCP connection now, after what is already owed to the client."""
        transport = self.transport
        if transport is None:
            return
        if self._held:  # replies held for one write: written, not lost with the connection
            transport.write(b"".join(self._held))
            self._held.clear()
            self._held_size = 0
        transport.close()

    # --- ASGI receive / send -----------------------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        session = self.session
        assert session is not None
        message = session.next_event()
        while message is None:
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
            message = session.next_event()
        if self.read_paused and session.queued < self.max_queue and self.transport is not None:
            self.read_paused = False
            self.transport.resume_reading()
        return message

    async def send(self, message: Any) -> None:
        session = self.session
        assert session is not None
        was_connecting = session.state is SessionState.CONNECTING
        session.on_send(message)
        # Hold the reply while more received messages wait: the app answers them next.
        self.flush(hold=session.queued > 0 and not self.write_paused)
        if was_connecting and session.state is SessionState.OPEN:
            self._arm_ping()
        if self.write_paused:
            await self.drain()
            if self.transport is None and session.disconnected:
                raise ClientDisconnected("the client closed the connection")

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- running the app -------------------------------------------------------------------------
    async def _run(self, session: WebSocketSession) -> None:
        try:
            await self.app(session.scope, self.receive, self.send)
        except asyncio.CancelledError:
            # Shutdown gave up on this handler: nothing sensible can follow.
            self._drop()
            raise
        except BaseException as exc:
            if not isinstance(exc, ClientDisconnected) and not session.disconnected:
                logger.error("Exception in ASGI application", exc_info=exc)
            session.app_failed()
            self.flush()
            if not isinstance(exc, Exception):
                raise
        else:
            if not session.app_returned():
                logger.error("ASGI app returned without answering the WebSocket handshake")
            self.flush()

    # --- keepalive -------------------------------------------------------------------------------
    def _arm_ping(self) -> None:
        interval = self.config.ws_ping_interval
        if interval is not None and self._ping_timer is None:
            self._ping_timer = self.loop.call_later(interval, self._ping)

    def _ping(self) -> None:
        self._ping_timer = None
        session = self.session
        if session is None or self.transport is None:
            return
        payload = session.ping()
        if payload is None:
            return  # closing: no more pings
        self.flush()
        timeout = self.config.ws_ping_timeout
        if timeout is not None:
            self.loop.call_later(timeout, self._check_pong, payload)
        self._arm_ping()

    def _check_pong(self, payload: bytes) -> None:
        session = self.session
        if session is None or self.transport is None or not session.ping_unanswered(payload):
            return
        if self.read_paused:
            # We stopped reading (back-pressure), so the pong may be sitting unread in the
            # socket: that proves nothing about the peer. Look again after another timeout.
            timeout = self.config.ws_ping_timeout
            assert timeout is not None
            self.loop.call_later(timeout, self._check_pong, payload)
            return
        session.fail(1011, "keepalive ping timeout")
        self.flush()
        self._wake()

    # --- shutdown --------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Graceful stop: close with 1012; the app sees websocket.disconnect and returns."""
        if self.session is not None:
            self.session.shutdown()
            self.flush()
            self._wake()  # a receive() waiting gets websocket.disconnect 1012

    def close(self) -> None:
        """Forced stop."""
        self._drop()
