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

from appserver.ops.health import not_found
from appserver.runtime.asgi_cycle import ASGICycle, service_unavailable
from appserver.runtime.http_protocol import HTTPProtocol

if TYPE_CHECKING:
    from appserver.config.model import Config
    from appserver.runtime.state import ServerState
    from appserver.runtime.tls import ServerTLS


class InstrumentedHTTPProtocol(HTTPProtocol):
    """See the module docstring. ``ops_only``: a health.bind / metrics.bind listener, which
    answers its routes and 404 for every other path, and never calls the app."""

    __slots__ = ("_access", "_metrics", "_ops", "_ops_only")

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

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        HTTPProtocol.data_received(self, data)

    def write(self, data: bytes, flush: bool) -> None:
        self.bytes_sent += len(data)
        HTTPProtocol.write(self, data, flush)

    def _takes_websocket(self, cycle: ASGICycle) -> bool:
        # An operations listener never hands a connection to the app, upgraded or not.
        return not self._ops_only and HTTPProtocol._takes_websocket(self, cycle)

    def _start(self, cycle: ASGICycle, app: Any = None) -> None:
        ops = self._ops
        # perf_counter, not loop.time(): uvloop's clock moves once per loop iteration, in ms.
        cycle.started_at = time.perf_counter()
        cycle.sent_before = self.bytes_sent
        cycle.request_id = None
        cycle.quiet = False
        routes = ops.ops_routes if self._ops_only else ops.routes
        route = routes.get(cycle.scope["path"]) if routes else None
        if route is not None:
            # Probes come before limit_concurrency: a busy process is still alive.
            cycle.quiet = not ops.log_probes
        elif self._ops_only:
            route = not_found
            cycle.quiet = not ops.log_probes
        else:
            if ops.request_id_header is not None:
                request_id = cycle.request_id = ops.request_id(cycle.scope["headers"])
                if ops.echo_request_id:
                    cycle.defaults = cycle.defaults.with_header(
                        ops.request_id_header, request_id.encode("ascii")
                    )
            if self._limit is not None and self.over_limit():
                route = service_unavailable
                self.rejected(503)
        HTTPProtocol._start(self, cycle, route)

    def response_complete(self, cycle: ASGICycle) -> None:
        seconds = time.perf_counter() - cycle.started_at
        metrics = self._metrics
        if metrics is not None:
            metrics.observe(cycle.scope["method"], cycle.status, seconds)
        access = self._access
        if access is not None and not cycle.quiet:
            sent = self.bytes_sent - cycle.sent_before
            access.request(cycle.scope, cycle.status, sent, seconds, cycle.request_id)
        HTTPProtocol.response_complete(self, cycle)

    def rejected(self, status: int) -> None:
        metrics = self._metrics
        if metrics is not None:
            metrics.reject(status)
