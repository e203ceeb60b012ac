"""The asyncio side of HTTP/1.1: one protocol for both parsers.

Bytes go to the parser adapter; the adapter calls ``on_request`` / ``on_body`` /
``on_request_end`` here; each request becomes an :class:`ASGICycle` (the sans-IO cycle plus the
awaitable ``receive``/``send`` handed to the app). Requests on one connection are answered in
order: a pipelined request waits, with reading paused, until the one before it is answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from appserver.errors import ClientDisconnected, ProtocolError
from appserver.http.cycle import ConnectionInfo, RequestCycle, ResponseState
from appserver.http.parser import BadRequest
from appserver.http.proxy import TrustedProxies
from appserver.http.response import simple_response
from appserver.runtime.logs import access_logger, logger

if TYPE_CHECKING:
    from appserver.config.model import Config
    from appserver.server import ServerState

# Buffer this much unread request body before we stop reading from the socket.
HIGH_WATER = 64 * 1024


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


class ASGICycle(RequestCycle):
    """A request cycle with the awaitable ``receive`` and ``send`` the app is given."""

    __slots__ = ("protocol", "waiter")

    def __init__(self, protocol: HTTPProtocol, *args: Any) -> None:
        super().__init__(*args)
        self.protocol = protocol
        self.waiter: asyncio.Future[None] | None = None

    async def receive(self) -> dict[str, Any]:
        message = self.next_event()
        if message is not None:
            protocol = self.protocol
            if protocol.read_paused:
                protocol.maybe_resume_reading()
            return message
        protocol = self.protocol
        pending = self.take_continue()
        if pending and protocol.transport is not None:
            protocol.transport.write(pending)
        protocol.maybe_resume_reading()
        while message is None:
            self.waiter = protocol.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
            message = self.next_event()
        protocol.maybe_resume_reading()
        return message

    async def send(self, message: Any) -> None:
        data = self.on_send(message)
        protocol = self.protocol
        if data:
            protocol.transport.write(data)  # type: ignore[union-attr]
            if protocol.write_paused:
                await protocol.drain()
        elif self.response_state is ResponseState.STARTED:
            # The head waits for the first body message so both go out in one write; if the
            # app pauses between the two, flush the head at the end of this loop iteration.
            protocol.loop.call_soon(self.flush_head)
        if self.response_complete:
            protocol.response_complete(self)

    def flush_head(self) -> None:
        if self.response_state is ResponseState.STARTED and not self.disconnected:
            data = self.start_streaming()
            transport = self.protocol.transport
            if transport is not None and data:
                transport.write(data)

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class HTTPProtocol(asyncio.Protocol):
    """One client connection speaking HTTP/1.1."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.config = config
        self.app = config.loaded_app
        self.parser_class = config._require_loaded().parser_class
        self.ws_protocol_class = config.ws_protocol_class  # None when WebSockets are off
        self.upgrading: ASGICycle | None = None  # a WebSocket handshake awaiting on_switch
        self.server_state = server_state
        self.app_state = app_state if app_state is not None else {}
        self.loop = loop or asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.info: ConnectionInfo | None = None
        self.parser: Any = None
        self.current: ASGICycle | None = None  # the request being answered
        self.parsing: ASGICycle | None = None  # the request whose bytes are arriving
        self.pipeline: deque[ASGICycle] = deque()
        self.read_paused = False
        self.write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.closing = False
        self._bad_request: BadRequest | None = None
        self._idle_since = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._access_log = config.access_log and access_logger.isEnabledFor(logging.INFO)
        self._limit = config.limit_concurrency

    # --- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only look-alikes.
        self.transport = transport  # type: ignore[assignment]
        self.server_state.connections.add(self)
        config = self.config
        client = _address(transport.get_extra_info("peername"))
        server = _address(transport.get_extra_info("sockname"))
        proxy = None
        if config.proxy_headers and client is not None:
            trusted = TrustedProxies(config.forwarded_allow_ips)
            if client[0] in trusted:
                proxy = trusted
        self.info = ConnectionInfo(
            server=server,
            client=client,
            scheme="https" if transport.get_extra_info("sslcontext") else "http",
            root_path=config.root_path,
            defaults=self.server_state.defaults,
            proxy=proxy,
            app_state=self.app_state,
        )
        self.parser = self.parser_class(self)
        self._set_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self.transport = None
        self.closing = True
        for cycle in (self.current, self.parsing, *self.pipeline):
            if cycle is not None:
                cycle.disconnect()
                cycle.wake()
        self.pipeline.clear()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed(data)
        except BadRequest as exc:
            self._reject(exc)

    def eof_received(self) -> bool | None:
        # Half-close: let the current response finish; the transport closes after it.
        if self.current is None:
            return None
        return True

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    async def drain(self) -> None:
        """Wait until the client reads what we wrote (or goes away)."""
        if self.write_paused and self.transport is not None:
            self._drain_waiter = self.loop.create_future()
            await self._drain_waiter
            self._drain_waiter = None

    # --- parser sink ---------------------------------------------------------------------------
    def on_request(
        self, method: bytes, target: bytes, http_version: str, headers: list[tuple[bytes, bytes]]
    ) -> None:
        try:
            cycle = ASGICycle(self, self.info, method, target, http_version, headers)
        except ProtocolError as exc:
            raise BadRequest(str(exc)) from None
        self.parsing = cycle
        if self.current is None and not self.closing:
            if self._takes_websocket(cycle):
                self.upgrading = cycle  # no HTTP app call: on_switch hands it over
            else:
                self._start(cycle)
        else:
            # Pipelined: answer in order, and stop reading until we catch up.
            self.pipeline.append(cycle)
            self.pause_reading()

    def on_body(self, data: bytes) -> None:
        cycle = self.parsing
        if cycle is not None:
            cycle.feed_body(data)
            if cycle.buffered > HIGH_WATER:
                self.pause_reading()
            cycle.wake()

    def on_request_end(self) -> bool:
        cycle = self.parsing
        if cycle is not None:
            cycle.end_request()
            cycle.wake()
            self.parsing = None
        return cycle is not None and cycle is self.upgrading

    def _takes_websocket(self, cycle: ASGICycle) -> bool:
        # An Upgrade we do not take (ws = "none", h2c, a non-GET, or one pipelined behind a
        # request still being answered) is served as plain HTTP, as RFC 9110 §7.8 allows.
        return (
            cycle.upgrade == b"websocket"
            and self.ws_protocol_class is not None
            and cycle.scope["method"] == "GET"
        )

    def on_switch(self, trailing: bytes) -> None:
        """The WebSocket handshake is parsed: hand the transport over; HTTP is done here."""
        cycle, self.upgrading = self.upgrading, None
        transport, self.transport = self.transport, None
        self.server_state.connections.discard(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if cycle is None or transport is None:
            return
        websocket = self.ws_protocol_class(self.config, self.server_state, self.loop)
        websocket.take_over(transport, cycle, trailing, self.read_paused)

    # --- running the app -----------------------------------------------------------------------
    def _start(self, cycle: ASGICycle) -> None:
        self.current = cycle
        app = self.app
        limit = self._limit
        state = self.server_state
        if limit is not None and (len(state.connections) > limit or len(state.tasks) >= limit):
            app = service_unavailable
        task = self.loop.create_task(self._run(app, cycle))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)

    async def _run(self, app: Any, cycle: ASGICycle) -> None:
        try:
            await app(cycle.scope, cycle.receive, cycle.send)
        except asyncio.CancelledError:
            # Shutdown gave up on this request; the connection cannot be answered properly.
            if not cycle.response_complete and self.transport is not None:
                self.transport.close()
            raise
        except BaseException as exc:
            self._app_failed(cycle, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if not cycle.response_complete and not cycle.disconnected:
                if not cycle.response_started:
                    logger.error("ASGI app returned without starting a response")
                else:
                    logger.error("ASGI app returned without completing its response")
                self._app_failed(cycle, None)

    def _app_failed(self, cycle: ASGICycle, exc: BaseException | None) -> None:
        if cycle.disconnected or isinstance(exc, ClientDisconnected):
            return  # the client left: nothing to answer, nothing to report
        if exc is not None:
            logger.error("Exception in ASGI application", exc_info=exc)
        complete = cycle.response_complete
        data = cycle.fail()
        transport = self.transport
        if data is not None:
            if transport is not None:
                transport.write(data)
            self.response_complete(cycle)
        elif not complete and transport is not None:
            # Cut short mid-response: closing is the only way to tell the client.
            transport.close()
        # An error after a complete response (a background task, Starlette re-raising after
        # its 500) leaves the connection as good as it was: keep it for the next request.

    def response_complete(self, cycle: ASGICycle) -> None:
        """The app finished a response: log it, then move to the next request or close."""
        self.server_state.total_requests += 1
        if self._access_log:
            self._log_access(cycle)
        if cycle is not self.current:
            return
        transport = self.transport
        if transport is None:
            return
        if not cycle.keep_alive or self.closing:
            transport.close()
            return
        if self._bad_request is not None and not self.pipeline:
            self._reject(self._bad_request)
            return
        if self.pipeline:
            self._start(self.pipeline.popleft())
        else:
            self.current = None
            self._set_idle()
        self.maybe_resume_reading()

    def _log_access(self, cycle: ASGICycle) -> None:
        scope = cycle.scope
        client = scope["client"]
        path = scope["path"]
        if scope["query_string"]:
            path = f"{path}?{scope['query_string'].decode('latin-1')}"
        access_logger.info(
            '%s - "%s %s HTTP/%s" %d',
            f"{client[0]}:{client[1]}" if client else "-",
            scope["method"],
            path,
            scope["http_version"],
            cycle.status,
        )

    def _reject(self, exc: BadRequest) -> None:
        """A malformed request: answer 400 once earlier requests are answered, then close."""
        if self.current is not None:
            self._bad_request = exc
            self.pause_reading()
            return
        logger.debug("Invalid HTTP request: %s", exc)
        if self.transport is not None:
            self.transport.write(
                simple_response(
                    400, b"Invalid HTTP request received.", self.server_state.defaults.encoded
                )
            )
            self.transport.close()
        self.closing = True

    # --- flow control --------------------------------------------------------------------------
    def pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def maybe_resume_reading(self) -> None:
        if not self.read_paused or self.transport is None or self.pipeline:
            return
        if self._bad_request is not None:
            return
        parsing = self.parsing
        if parsing is not None and parsing.buffered > HIGH_WATER:
            return
        self.read_paused = False
        self.transport.resume_reading()

    # --- keep-alive ----------------------------------------------------------------------------
    def _set_idle(self) -> None:
        # A lazy timer: armed once, it re-arms itself while the connection keeps being used,
        # so a busy keep-alive connection costs one clock read per request, not a timer.
        self._idle_since = self.loop.time()
        if self._idle_timer is None:
            self._idle_timer = self.loop.call_at(
                self._idle_since + self.config.timeout_keep_alive, self._check_idle
            )

    def _check_idle(self) -> None:
        self._idle_timer = None
        if self.transport is None:
            return
        if self.current is not None:
            return  # busy; _set_idle re-arms when the response is done
        deadline = self._idle_since + self.config.timeout_keep_alive
        if self.loop.time() >= deadline:
            self.transport.close()
        else:
            self._idle_timer = self.loop.call_at(deadline, self._check_idle)

    # --- shutdown ------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Graceful stop: close now if idle, else once the current response is complete."""
        self.closing = True
        if self.transport is None:
            return
        current = self.current
        if current is None or current.response_complete:
            self.transport.close()
        elif not current.response_started:
            current.keep_alive = False  # so its head says connection: close

    def close(self) -> None:
        """Forced stop."""
        if self.transport is not None:
            self.transport.close()


def _address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple | list) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None
