"""The asyncio side of WebSockets: owns the transport after the HTTP protocol switched.

``HTTPProtocol`` parses the handshake request, then hands the transport, the request cycle
and whatever bytes followed the request to :meth:`WebSocketProtocol.take_over`; this object
becomes the transport's protocol (``transport.set_protocol``) and the member of
``ServerState.connections``. Protocol logic lives in :mod:`appserver.websocket.session`
(sans-IO); this module only moves bytes, runs the app, and keeps the timers:

* what the session has for the network goes through :meth:`send_pending` into the connection's
  one write buffer (:mod:`appserver.runtime.connection`, shared with HTTP);
* while received messages still wait for the app, its replies are held back and written
  together (one write for the batch, not one per message); see :meth:`send_pending`;
* reading pauses while ``ws_max_queue`` received messages wait for the app;
* ``send()`` waits for the transport to drain when the client reads slowly;
* a keepalive ping every ``ws_ping_interval``, failing with 1011 after ``ws_ping_timeout``;
* after we send a close frame, the client has ``timeout_websocket_close`` seconds to answer it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from appserver.errors import ClientDisconnected
from appserver.http.response import simple_response
from appserver.runtime.access import AccessLog
from appserver.runtime.connection import ACTIVE, Connection, cancelled_by_peer
from appserver.runtime.logs import access_logger, logger
from appserver.websocket.session import SessionState, WebSocketSession

if TYPE_CHECKING:
    from appserver.config.model import Config
    from appserver.http.cycle import RequestCycle
    from appserver.runtime.state import ServerState

_OPEN = SessionState.OPEN


class WebSocketProtocol(Connection):
    """One upgraded client connection. Built by the HTTP protocol; see the module docstring."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.init_connection(
            server_state,
            loop,
            config.limit_concurrency,
            config.timeout_write,
            phase=ACTIVE,
            reset_contextvars=config.reset_contextvars,
        )
        self.config = config
        self.app = config.loaded_app
        self.session: WebSocketSession | None = None
        self.max_queue = config.ws_max_queue
        self._ping_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None  # the app's, set by the app runner
        # An access line when the session opens and one when it closes (uvicorn writes the
        # first only); opened_at is None until the app accepts.
        self._access: AccessLog | None = None
        if config.access_log and access_logger.isEnabledFor(logging.INFO):
            ops = server_state.operations
            self._access = ops.access if ops is not None else AccessLog(config.access_log_format)
        self._opened_at: float | None = None

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
        if self.over_limit():
            session.end_with(simple_response(503, b"Service Unavailable", cycle.defaults.encoded))
            self.send_pending()
            return
        if not session.handshake():
            self.send_pending()
            return
        self.run_app(self.app, session.scope, self.receive, self.send, self)
        if trailing:
            self.data_received(trailing)

    # --- asyncio.Protocol ------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        session = self.session
        assert session is not None
        session.receive_data(data)
        self.send_pending()
        self.wake()
        if session.queued >= self.max_queue:
            # Back-pressure: the app is not keeping up; let TCP push back on the client.
            self.pause_reading()

    def eof_received(self) -> bool | None:
        session = self.session
        assert session is not None
        session.receive_eof()
        self.send_pending()
        self.wake()
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._ping_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._close_timer = None
        session = self.session
        if session is not None:
            session.connection_lost()
            if self._access is not None and self._opened_at is not None:
                seconds = self.loop.time() - self._opened_at
                self._access.websocket(session.scope, "close", session.close_code, seconds)
        Connection.connection_lost(self, exc)

    # --- flow control ------------------------------------------------------------------------------
    def pause_writing(self) -> None:
        # The peer leaves our writes unread: stop reading from it too. Every ping it sends is
        # answered with a pong, so a peer that pings and never reads would otherwise grow our
        # buffer without bound; now its pings wait in its own socket buffers.
        Connection.pause_writing(self)
        self.pause_reading()

    def resume_writing(self) -> None:
        Connection.resume_writing(self)
        session = self.session
        if session is not None and session.queued < self.max_queue:
            self.resume_reading()

    # --- output ------------------------------------------------------------------------------------
    def send_pending(self, hold: bool = False) -> None:
        """Move what the session has for the network into the write buffer; close when it says.

        ``hold``: the app is answering one of several messages that arrived together and will
        answer the rest before it waits again, so keep this reply for one write with the others
        (a write is a syscall, and it dominates the cost of a small message). The last reply of
        the batch, the buffer passing its limit, or the end of this loop iteration writes it.
        """
        session = self.session
        transport = self.transport
        if session is None or transport is None:
            return
        data, close = session.data_to_send()
        if close:
            self.write(data, flush=True)
            self.close_transport()
            return
        if hold or self._out:
            self.write(data, flush=not hold)
        elif data:
            transport.write(data)  # write() would do just this; one call less per message
        if hold and session.state is _OPEN:
            return  # a reply to a message: no close frame was sent, none is expected yet
        if self._close_timer is None and session.close_expected():
            self.stop_serving()
            self._close_timer = self.loop.call_later(
                self.config.timeout_websocket_close, self._close_timed_out
            )
            # The client's answering close frame may be behind the messages we left unread;
            # no message matters any more, so read on and let the handshake finish.
            self.resume_reading()

    def _close_timed_out(self) -> None:
        self._close_timer = None
        self.close_transport()

    # --- ASGI receive / send -----------------------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        session = self.session
        assert session is not None
        message = session.next_event()
        while message is None:
            try:
                await self.wait()
            except asyncio.CancelledError:
                if not cancelled_by_peer():
                    raise
            message = session.next_event()
        if self.read_paused and session.queued < self.max_queue and not self.write_paused:
            self.resume_reading()
        return message

    async def send(self, message: Any) -> None:
        session = self.session
        assert session is not None
        was_connecting = session.state is SessionState.CONNECTING
        session.on_send(message)
        # Hold the reply while more received messages wait: the app answers them next.
        self.send_pending(hold=session.queued > 0 and not self.write_paused)
        if was_connecting and session.state is SessionState.OPEN:
            self._arm_ping()
            if self._access is not None:
                self._opened_at = self.loop.time()
                self._access.websocket(session.scope, "open", None, None)
        if self.write_paused:
            await self.drain()
            if self.transport is None and session.disconnected:
                raise ClientDisconnected("the client closed the connection")

    # --- the app's outcome (the connection core runs it) -------------------------------------------
    def app_returned(self, context: WebSocketProtocol) -> None:
        session = self.session
        assert session is not None
        if not session.app_returned():
            logger.error("ASGI app returned without answering the WebSocket handshake")
        self.send_pending()

    def app_failed(self, context: WebSocketProtocol, exc: BaseException) -> None:
        session = self.session
        assert session is not None
        if not isinstance(exc, ClientDisconnected) and not session.disconnected:
            logger.error("Exception in ASGI application", exc_info=exc)
        session.app_failed()
        self.send_pending()

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
        self.send_pending()
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
        self.send_pending()
        self.wake()

    # --- shutdown --------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Graceful stop: close with 1012; the app sees websocket.disconnect and returns."""
        if self.session is not None:
            self.session.shutdown()
            self.send_pending()
            self.wake()  # a receive() waiting gets websocket.disconnect 1012

    def close(self) -> None:
        """Forced stop."""
        self.close_transport()
