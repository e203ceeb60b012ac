"""The HTTP protocol with the operations side: probes, metrics, request ids, rich access lines.

A subclass, chosen at load only when something of :mod:`appserver.runtime.operations` is
configured, so that a server without it runs the plain protocol's request path untouched
(the standard asks that what is off cost nothing). Each hook adds its work, then hands over to
:class:`~appserver.runtime.http_protocol.HTTPProtocol`.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from appserver.http.cycle import Output, output_size
from appserver.ops.health import not_found
from appserver.runtime.asgi_cycle import ASGICycle, service_unavailable
from appserver.runtime.http_protocol import HTTPProtocol

if TYPE_CHECKING:
    from appserver.config.model import Config
    from appserver.runtime.state import ServerState
    from appserver.runtime.tls import ServerTLS


class InstrumentedHTTPProtocol(HTTPProtocol):
    """See the module docstring. ``ops_only``: a health.bind / metrics.bind listener, which
    answers its routes and 404 for every other path, and never calls the app.

    Probes alone (the common Kubernetes set-up) cost an app request one dict lookup: it is
    timed only for metrics or a json/template access line, and its bytes counted only by
    :class:`CountingHTTPProtocol`, chosen when something reads them (:func:`protocol_for`).
    """

    __slots__ = ("_access", "_metrics", "_ops", "_ops_only", "_timed")

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        tls: ServerTLS | None = None,
        ops_only: bool = False,
    ) -> None:
        HTTPProtocol.__init__(self, config, server_state, app_state, loop, tls)
        ops = server_state.operations
        assert ops is not None, "the server sets ServerState.operations before it accepts"
        self._ops = ops
        self._ops_only = ops_only
        self._metrics = ops.metrics
        # The base class's text line is written here, in the configured format, instead.
        self._access = ops.access if self._access_log else None
        self._access_log = False
        self._timed = self._metrics is not None or (self._access is not None and self._access.rich)

    def _takes_websocket(self, cycle: ASGICycle) -> bool:
        # An operations listener never hands a connection to the app, upgraded or not.
        return not self._ops_only and HTTPProtocol._takes_websocket(self, cycle)

    def _start(self, cycle: ASGICycle, app: Any = None) -> None:
        ops = self._ops
        if self._timed:
            # perf_counter, not loop.time(): uvloop's clock moves once per loop iteration.
            cycle.started_at = time.perf_counter()
            cycle.sent_before = self.bytes_sent
        cycle.request_id = None
        routes = ops.ops_routes if self._ops_only else ops.routes
        route = routes.get(cycle.scope["path"]) if routes else None
        if route is not None or self._ops_only:
            # Probes come before limit_concurrency: a busy process is still alive.
            cycle.quiet = not ops.log_probes
            HTTPProtocol._start(self, cycle, not_found if route is None else route)
            return
        cycle.quiet = False
        if ops.request_id_header is not None:
            request_id = cycle.request_id = ops.request_id(cycle.scope["headers"])
            if ops.echo_request_id:
                cycle.defaults = cycle.defaults.with_header(
                    ops.request_id_header, request_id.encode("ascii")
                )
        if self._limit is not None and self.over_limit():
            self.rejected(503)
            HTTPProtocol._start(self, cycle, service_unavailable)
        else:
            HTTPProtocol._start(self, cycle, self.app)

    def response_complete(self, cycle: ASGICycle) -> None:
        if self._timed:
            seconds = time.perf_counter() - cycle.started_at
            metrics = self._metrics
            if metrics is not None:
                metrics.observe(cycle.scope["method"], cycle.status, seconds)
            access = self._access
            if access is not None and not cycle.quiet:
                sent = self.bytes_sent - cycle.sent_before
                access.request(cycle.scope, cycle.status, sent, seconds, cycle.request_id)
        elif self._access is not None and not cycle.quiet:
            self._access.request(cycle.scope, cycle.status, 0, 0.0, None)  # the text line
        HTTPProtocol.response_complete(self, cycle)

    def rejected(self, status: int) -> None:
        metrics = self._metrics
        if metrics is not None:
            metrics.reject(status)


class CountingHTTPProtocol(InstrumentedHTTPProtocol):
    """Also counts the bytes read and written: for metrics and the access line's ``bytes``.
    Its own class, so that no other configuration pays two more calls per request."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        HTTPProtocol.data_received(self, data)

    def write(self, data: Output, flush: bool) -> None:
        self.bytes_sent += output_size(data)
        HTTPProtocol.write(self, data, flush)


def protocol_for(config: Config) -> type[InstrumentedHTTPProtocol]:
    """The instrumented class ``config`` needs (it wants_instruments)."""
    counts = config.metrics_route is not None or (
        config.access_log and config.access_log_format != "text"
    )
    return CountingHTTPProtocol if counts else InstrumentedHTTPProtocol
