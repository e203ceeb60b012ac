"""The asyncio side of HTTP/1.1: one protocol for both parsers, on the shared connection core.

Bytes go to the parser adapter; the adapter calls ``on_request`` / ``on_body`` /
``on_request_end`` here; each request becomes an :class:`ASGICycle` (the sans-IO cycle plus the
awaitable ``receive``/``send`` handed to the app). Requests on one connection are answered in
order: a pipelined request waits, with reading paused, until the one before it is answered.

The write buffer, flow control, waiter, app runner, concurrency gate and the connection's
:class:`~appserver.runtime.connection.Phase` live in :mod:`appserver.runtime.connection`.
Phases here: NEW until the first byte, HEAD while a request head is arriving, ACTIVE while a
request is answered (pipelined ones follow without leaving it), IDLE between requests on a
keep-alive connection, CLOSING once no new request will be served, UPGRADED after a WebSocket
handshake handed the transport over, CLOSED when the transport is gone.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

from appserver._accel import mypyc_attr
from appserver.errors import ClientDisconnected, ProtocolError
from appserver.http.cycle import ConnectionInfo, ResponseState
from appserver.http.limits import CONTENT_TOO_LARGE
from appserver.http.parser import CLOSE, CONTINUE, SWITCH, UNATTACHED, BadRequest, RequestParser
from appserver.http.response import error_response
from appserver.runtime.access import log_access
from appserver.runtime.asgi_cycle import ASGICycle, service_unavailable
from appserver.runtime.connection import (
    ACTIVE,
    CLOSED,
    CLOSING,
    HEAD,
    IDLE,
    NEW,
    UPGRADED,
    Connection,
)
from appserver.runtime.keepalive import KeepAliveTimers, Timeout
from appserver.runtime.logs import access_logger, logger

if TYPE_CHECKING:
    from appserver.config.model import Config
    from appserver.runtime.state import ServerState
    from appserver.runtime.tls import ServerTLS

# Buffer this much unread request body before we stop reading from the socket.
HIGH_WATER: Final = 64 * 1024

REQUEST_TIMEOUT: Final = 408
_STARTED: Final = ResponseState.STARTED
_DONE: Final = ResponseState.DONE


# Parsers the server keeps for whichever connection reads a request next (see
# response_complete); enough for any steady load, small enough (~1 KiB each) to not matter.
MAX_IDLE_PARSERS = 256

# On a graceful stop, how long an idle keep-alive connection may still bring one request
# (answered with connection: close) before it is closed: long enough for a busy client's next
# request, short enough not to hold the drain.
LAST_CALL: Final = 0.25


# Compiled (appserver._accel): the instrumented and proxied protocols extend it, interpreted.
@mypyc_attr(allow_interpreted_subclasses=True)
class HTTPProtocol(Connection):
    """One client connection speaking HTTP/1.1."""

    __slots__ = (
        "_access_log",
        "_bad_request",
        "_body_limit",
        "_body_since",
        "_head_limits",
        "_idle_since",
        "_idle_timer",
        "_keep_alive",
        "_last_call",
        "_next_waits",
        "_parser_class",
        "_preamble",
        "_requests_limit",
        "_served",
        "_tls",
        "_trusted",
        "_ws_protocol",
        "app",
        "app_state",
        "config",
        "current",
        "info",
        "parser",
        "parsing",
        "pipeline",
        "upgrading",
        "websockets",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        tls: ServerTLS | None = None,
    ) -> None:
        loop = loop or asyncio.get_running_loop()
        self._tls = tls  # the listener's TLS: the scope's TLS extension comes from it
        self.init_connection(
            server_state,
            loop,
            config.limit_concurrency,
            config.timeout_write,
            reset_contextvars=config.reset_contextvars,
        )
        self.config = config
        loaded = config._require_loaded()
        self.app = loaded.app
        self._trusted = loaded.trusted_proxies
        self._parser_class = loaded.parser_class
        self._head_limits = loaded.head_limits
        self.websockets = loaded.websockets  # False: upgrades are served as plain HTTP
        self._ws_protocol = loaded.ws_protocol
        self.upgrading: ASGICycle | None = None  # a WebSocket handshake awaiting on_switch
        self.app_state = app_state if app_state is not None else {}
        self.info: ConnectionInfo | None = None
        # Taken from the server's idle parsers when a request arrives, given back when the
        # connection goes idle (see response_complete).
        self.parser: RequestParser | None = None
        self.current: ASGICycle | None = None  # the request being answered
        self.parsing: ASGICycle | None = None  # the request whose bytes are arriving
        # Pipelined requests are rare and few: no list until the first one.
        self.pipeline: list[ASGICycle] | None = None
        self._bad_request: BadRequest | None = None
        self._idle_since = 0.0  # when the current IDLE, NEW or HEAD phase began
        self._idle_timer: Timeout | None = None
        self._body_since = 0.0  # when the app last began to wait for body bytes
        self._served = 0  # requests started on this connection
        self._last_call: float | None = None  # draining: when an idle connection closes
        # Read on every request: kept here, not looked up on the config each time.
        self._body_limit = config.limit_body_size
        self._requests_limit = config.limit_keep_alive_requests
        self._next_waits = False  # a pipelined request waits for the client to read
        keep_alive = server_state.keep_alive
        if keep_alive is None or keep_alive.loop is not loop:
            keep_alive = server_state.keep_alive = KeepAliveTimers(loop)
        self._keep_alive = keep_alive
        self._access_log = config.access_log and access_logger.isEnabledFor(logging.INFO)

    # --- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only look-alikes.
        self.transport = transport
        self.server_state.connections.add(self)
        config = self.config
        client = _address(transport.get_extra_info("peername"))
        server = _server_address(transport.get_extra_info("sockname"))
        trusted = self._trusted
        proxy = (
            trusted if trusted is not None and client is not None and client[0] in trusted else None
        )
        tls = self._tls
        secure = tls is not None or bool(transport.get_extra_info("sslcontext"))
        self.info = ConnectionInfo(
            server=server,
            client=client,
            scheme="https" if secure else "http",
            root_path=config.root_path,
            defaults=self.server_state.defaults,
            proxy=proxy,
            app_state=self.app_state,
            extensions={"tls": tls.extension(transport)} if tls is not None else None,
        )
        self._set_idle()
        # The server's shutdown steps go through state.connections, which a connection joins
        # here, a loop callback after it was accepted (asyncio and uvloop alike): one accepted
        # before a step and made after it catches up now, or it would stay a keep-alive
        # connection the drain waits on until something closes it under a request.
        state = self.server_state
        if state.draining:
            self.shutdown()
        elif state.winding_down:
            self.wind_down()  # timeouts.shutdown_delay: one request, then close

    def connection_lost(self, exc: Exception | None) -> None:
        Connection.connection_lost(self, exc)
        self.pipeline = None
        if self._idle_timer is not None:
            self._keep_alive.cancel(self._idle_timer)
            self._idle_timer = None

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:
            idle_parsers = self.server_state.idle_parsers
            if idle_parsers:
                parser = idle_parsers.pop()
                parser.sink = self
            else:
                parser = self._parser_class(self, self._head_limits)
            self.parser = parser
        try:
            parser.feed(data)
        except BadRequest as exc:
            self._reject(exc)
            return
        phase = self.phase
        if (phase is IDLE or phase is NEW) and not parser.idle:
            # A head begun, not complete (on_request makes it ACTIVE): timeouts.header_read
            # runs from its first byte.
            self.set_phase(HEAD)
            self._set_idle()

    def eof_received(self) -> bool | None:
        # Half-close: let the current response finish; the transport closes after it. A request
        # whose body was still arriving can never complete: if it is the one being answered,
        # close now (connection_lost answers its receive() with http.disconnect); if it waits in
        # the pipeline, it is dropped and the connection closes after the current response.
        current = self.current
        parsing = self.parsing
        if current is None or parsing is current:
            return None
        self.stop_serving()
        if parsing is not None:
            self.parsing = None
            parsing.disconnect()
            if self.pipeline and parsing in self.pipeline:
                self.pipeline.remove(parsing)
        return True

    # --- the one flush point -------------------------------------------------------------------
    def flush(self) -> None:
        """Write what is buffered, after a response head still held back, in one write."""
        current = self.current
        if current is not None and current.response_state is _STARTED and not current.disconnected:
            # Through write(), as every byte sent is (the counting protocol counts there).
            self.write(current.start_streaming(), flush=False)
        if self._out:
            Connection.flush(self)
        else:
            self._flush_scheduled = False  # the common case: the response went out whole

    # --- parser sink ---------------------------------------------------------------------------
    def on_request(
        self, method: bytes, target: bytes, http_version: str, headers: list[tuple[bytes, bytes]]
    ) -> None:
        try:
            cycle = ASGICycle(self.info, method, target, http_version, headers)  # type: ignore[arg-type]
        except ProtocolError as exc:
            raise BadRequest(str(exc)) from None
        cycle.protocol = self
        if self._body_limit is not None:
            cycle.received = 0  # a chunked body is counted here (a declared length was checked)
        self.parsing = cycle
        phase = self.phase
        if self.current is None and phase is not CLOSING and phase is not CLOSED:
            # NEW, IDLE or HEAD here, and each may become ACTIVE
            # (TRANSITIONS). Assigned, not set_phase()d: this runs on every request, and the
            # check costs more than the rest of this method (tests check the transitions).
            self.phase = ACTIVE
            if cycle.upgrade is not None and self._takes_websocket(cycle):
                self.upgrading = cycle  # no HTTP app call: on_switch hands it over
            else:
                self._start(cycle)
        else:
            # Pipelined: answer in order, and stop reading until we catch up.
            if self.pipeline is None:
                self.pipeline = [cycle]
            else:
                self.pipeline.append(cycle)
            if len(self.pipeline) >= self.config.limit_pipeline:
                self.pause_reading()

    def on_body(self, data: bytes) -> None:
        cycle = self.parsing
        if cycle is not None:
            limit = self._body_limit
            if limit is not None:
                cycle.received += len(data)
                if cycle.received > limit:
                    raise BadRequest("request body too large", CONTENT_TOO_LARGE)
            cycle.feed_body(data)
            if cycle.buffered > HIGH_WATER:
                self.pause_reading()
            self.wake()

    def on_request_end(self) -> int:
        cycle = self.parsing
        if cycle is None:
            return CONTINUE
        cycle.end_request()
        if self.waiter is not None:
            self.wake()
        self.parsing = None
        if cycle is self.upgrading:
            return SWITCH
        return CONTINUE if cycle.keep_alive else CLOSE

    def _takes_websocket(self, cycle: ASGICycle) -> bool:
        # An Upgrade we do not take (ws = "none", h2c, a non-GET, or one pipelined behind a
        # request still being answered) is served as plain HTTP, as RFC 9110 §7.8 allows.
        return (
            cycle.upgrade == b"websocket"
            and self.websockets
            and cycle.scope["method"] == "GET"
            and self._ws_protocol() is not None
        )

    def on_switch(self, trailing: bytes) -> None:
        """The WebSocket handshake is parsed: hand the transport over; HTTP is done here."""
        cycle, self.upgrading = self.upgrading, None
        transport, self.transport = self.transport, None
        self.server_state.connections.discard(self)
        self.fold_counts()
        self.set_phase(UPGRADED)
        if self._idle_timer is not None:
            self._keep_alive.cancel(self._idle_timer)
            self._idle_timer = None
        protocol_class = self._ws_protocol()
        if cycle is None or transport is None or protocol_class is None:
            return
        websocket = protocol_class(self.config, self.server_state, self.loop)
        websocket.take_over(transport, cycle, trailing, self.read_paused)

    # --- running the app -----------------------------------------------------------------------
    def _start(self, cycle: ASGICycle, app: Any = None) -> None:
        """Answer ``cycle`` with the app (or ``app``, the instrumented protocol's choice)."""
        self.current = cycle
        served = self._served = self._served + 1
        limit = self._requests_limit
        if limit is not None and served >= limit:
            cycle.keep_alive = False  # the last one here: its head says connection: close
        if app is None:
            app = service_unavailable if self._limit is not None and self.over_limit() else self.app
        self.run_app(app, cycle.scope, cycle.receive, cycle.send, cycle)

    def app_returned(self, cycle: ASGICycle) -> None:
        if cycle.response_state is not _DONE and not cycle.disconnected:
            if not cycle.response_started:
                logger.error("ASGI app returned without starting a response")
            else:
                logger.error("ASGI app returned without completing its response")
            self._answer_failure(cycle)

    def app_failed(self, cycle: ASGICycle, exc: BaseException) -> None:
        if cycle.disconnected or isinstance(exc, ClientDisconnected):
            return  # the client left: nothing to answer, nothing to report
        logger.error("Exception in ASGI application", exc_info=exc)
        self._answer_failure(cycle)

    def app_cancelled(self, cycle: ASGICycle) -> None:
        # Shutdown gave up on this request: the connection cannot be answered properly.
        if not cycle.response_complete:
            self.close_transport()

    def _answer_failure(self, cycle: ASGICycle) -> None:
        complete = cycle.response_complete
        data = cycle.fail()
        if data is not None:
            self.write(data, flush=True)
            self.wake()  # the request is over for a receive() still waiting (a 500 is DONE)
            self.response_complete(cycle)
        elif not complete:
            # Cut short mid-response: send what the app did send, then close, the only way to
            # tell the client the response is incomplete.
            self.close_transport()
        # An error after a complete response (a background task, Starlette re-raising after
        # its 500) leaves the connection as good as it was: keep it for the next request.

    def response_complete(self, cycle: ASGICycle) -> None:
        """The app finished a response: log it, then move to the next request or close."""
        self.server_state.total_requests += 1
        # Everything of this response is written (send() flushed its last bytes): the flush
        # asked for when its head was held back is not owed any more (see Flusher.run).
        self._flush_scheduled = False
        if self._access_log:
            log_access(cycle.scope, cycle.status)
        if cycle is not self.current or self.transport is None:
            return
        if not cycle.keep_alive or self.phase is CLOSING:
            self.close_transport()
            return
        if self._bad_request is not None and not self.pipeline:
            self.current = None  # else _reject() would defer the 400 again, forever
            self._reject(self._bad_request)
            return
        if self.pipeline:
            if self.write_paused:
                # The client is not reading: answering the next request now would only pile
                # its response up in memory. resume_writing() starts it.
                self._next_waits = True
                return
            self._start(self.pipeline.pop(0))
        else:
            self.current = None
            parser = self.parser
            # ACTIVE (a response just completed) may become HEAD or IDLE: assigned for speed,
            # as in on_request.
            if parser is not None and not parser.idle:
                self.phase = HEAD  # the next request's head has begun to arrive
            else:
                self.phase = IDLE
            self._set_idle()
            # An idle keep-alive connection needs no parser until its next request: give this
            # one to the server for whichever connection reads a request next. With a parser
            # each (~1 KiB with httptools), idle connections would cost twice the memory.
            if parser is not None and parser.idle:
                parser.sink = UNATTACHED
                self.parser = None
                idle_parsers = self.server_state.idle_parsers
                if len(idle_parsers) < MAX_IDLE_PARSERS:  # after a burst, let the rest go
                    idle_parsers.append(parser)
        if self.read_paused:
            self.maybe_resume_reading()

    def _reject(self, exc: BadRequest) -> None:
        """A malformed request: answer 400 once earlier requests are answered, then close."""
        parsing = self.parsing
        if parsing is not None:
            # The bad bytes are in the body of a request already announced: its app would wait
            # for the rest of the body forever. It gets http.disconnect; the request gets the
            # 400 in its turn (uvicorn answers 400 and closes too), or, if its response has
            # started, the connection closes.
            self.parsing = None
            parsing.disconnect()
            self.wake()
            if parsing is not self.current and self.pipeline:
                self.pipeline.remove(parsing)
            elif parsing.response_started:
                self.close_transport()
                return
            else:
                self.current = None
        if self.current is not None:
            self._bad_request = exc
            self.pause_reading()
            return
        logger.debug("Invalid HTTP request (%d): %s", exc.status, exc)
        self.rejected(exc.status)
        self.write(
            error_response(exc.status, self.server_state.defaults.encoded),
            flush=True,
        )
        self.close_transport()

    def rejected(self, status: int) -> None:
        """A request is refused with ``status`` by the server itself (metrics count it)."""

    # --- flow control --------------------------------------------------------------------------
    def pause_writing(self) -> None:
        # Over the transport's high-water mark: stop reading requests too, so a client that
        # pipelines and does not read cannot make us hold its responses.
        Connection.pause_writing(self)
        self.pause_reading()

    def resume_writing(self) -> None:
        Connection.resume_writing(self)
        if self._next_waits:
            self._next_waits = False
            if self.pipeline and self.transport is not None:
                self._start(self.pipeline.pop(0))
        self.maybe_resume_reading()

    def maybe_resume_reading(self) -> None:
        if not self.read_paused or self.transport is None or self.write_paused:
            return
        if self._bad_request is not None:
            return
        if self.pipeline and len(self.pipeline) >= self.config.limit_pipeline:
            return
        parsing = self.parsing
        if parsing is not None and parsing.buffered > HIGH_WATER:
            return
        self.resume_reading()

    # --- timeouts ---------------------------------------------------------------------------
    # One timeout per connection at a time, on the server's shared KeepAliveTimers, chosen by
    # the phase: IDLE timeouts.keep_alive, NEW and HEAD timeouts.header_read, ACTIVE
    # timeouts.body_read while the app waits for body bytes. The timer is lazy: armed once, it
    # looks at the phase when it comes up and waits again if the deadline moved, so a busy
    # keep-alive connection costs one clock read per request.
    def _set_idle(self) -> None:
        """An IDLE, NEW or HEAD phase begins now."""
        now = self._idle_since = self.loop.time()
        if self.phase is IDLE:
            when = now + self.config.timeout_keep_alive
        else:
            when = now + self.config.timeout_header_read
        timer = self._idle_timer
        if timer is None or when < timer.when:  # else the armed timer comes first: it looks again
            self._arm(when)

    def waiting_for_body(self) -> None:
        """The app waits for body bytes (``receive()``): timeouts.body_read runs from now."""
        now = self._body_since = self.loop.time()
        self._arm(now + self.config.timeout_body_read)

    def _arm(self, when: float) -> None:
        """Have check_idle called at ``when`` at the latest."""
        timer = self._idle_timer
        if timer is None:
            self._idle_timer = self._keep_alive.call_at(when, self)
        elif when < timer.when:
            self._keep_alive.cancel(timer)
            self._idle_timer = self._keep_alive.call_at(when, self)

    def _deadline(self) -> float | None:
        """When the current phase's timeout expires; None when no timeout applies now."""
        phase = self.phase
        last_call = self._last_call
        if phase is IDLE:
            deadline = self._idle_since + self.config.timeout_keep_alive
            return deadline if last_call is None else min(deadline, last_call)
        if phase is NEW:
            deadline = self._idle_since + self.config.timeout_header_read
            return deadline if last_call is None else min(deadline, last_call)
        if phase is HEAD:
            return self._idle_since + self.config.timeout_header_read
        cycle = self.parsing
        if cycle is not None and not cycle.request_complete and self.waiter is not None:
            return self._body_since + self.config.timeout_body_read
        return None  # answering, not waiting for the client: the next wait arms again

    def check_idle(self) -> None:
        """The connection's timer came up: act if its phase's deadline passed, else wait."""
        self._idle_timer = None
        if self.transport is None:
            return
        deadline = self._deadline()
        if deadline is None:
            return
        if self.loop.time() < deadline:
            self._idle_timer = self._keep_alive.call_at(deadline, self)
            return
        phase = self.phase
        current = self.current
        if phase is HEAD:
            # Part of a head and no end to it (slowloris): 408, as nginx answers.
            self._reject(BadRequest("request head not complete in time", REQUEST_TIMEOUT))
        elif phase is NEW or phase is IDLE:
            self.close_transport()  # nothing was asked: nothing to answer
        elif current is not None and self.parsing is current and not current.response_started:
            self._reject(BadRequest("request body stalled", REQUEST_TIMEOUT))
        else:
            self.close_transport()

    # --- shutdown ------------------------------------------------------------------------------
    def wind_down(self) -> None:
        """timeouts.shutdown_delay began: keep serving, but the response under way (or the
        next one, on an idle connection) is this connection's last (connection: close)."""
        current = self.current
        if current is not None and not current.response_started:
            current.keep_alive = False
        last = self._served if current is not None else self._served + 1
        limit = self._requests_limit
        self._requests_limit = last if limit is None else min(limit, last)

    def shutdown(self) -> None:
        """Graceful stop: the request under way (or arriving) finishes with connection: close;
        an idle connection gets a last call (LAST_CALL), then closes."""
        if self.transport is None:
            return
        current = self.current
        if current is None and self.phase is not CLOSING and self.phase is not CLOSED:
            # Closing an idle keep-alive connection races the client's next request, which
            # then meets a reset (RFC 9112 §9.6). So for a moment a request may still come:
            # it is served as this connection's last (connection: close), as is a head
            # already arriving; a connection still idle after LAST_CALL closes.
            self._requests_limit = self._served + 1
            self._last_call = self.loop.time() + LAST_CALL
            if self.phase is not HEAD:
                self._arm(self._last_call)
            return
        self.stop_serving()
        if current is None or current.response_complete:
            self.close_transport()
        elif not current.response_started:
            current.keep_alive = False  # so its head says connection: close

    def close(self) -> None:
        """Forced stop."""
        self.close_transport()

    # --- ends ----------------------------------------------------------------------------------
    def end_exchanges(self) -> None:
        """Every request on this connection is over: a waiting ``receive()`` gets
        ``http.disconnect`` (ASGI HTTP: after the response, or once the connection closed)."""
        for cycle in (self.current, self.parsing, *(self.pipeline or ())):
            if cycle is not None:
                cycle.disconnect()
        self.wake()


def _address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple | list) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None


def _server_address(value: Any) -> tuple[str, int | None] | None:
    """The scope's ``server``: (host, port), or (path, None) on a Unix socket (ASGI spec)."""
    if isinstance(value, str | bytes) and value:
        return (value if isinstance(value, str) else value.decode("utf-8", "replace"), None)
    return _address(value)
