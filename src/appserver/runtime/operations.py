"""What a server serves and records besides the app, built once when it starts.

Health and readiness routes, the metrics endpoint and counters, request ids and the access
line's format. When none is configured the server uses the plain
:class:`~appserver.runtime.http_protocol.HTTPProtocol` and none of this runs; otherwise
:class:`~appserver.runtime.instrumented.InstrumentedHTTPProtocol` consults it per request.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from appserver.ops.health import App, liveness_app, readiness_app, rendered_app
from appserver.ops.metrics import Metrics, SnapshotDirectory, merge, render
from appserver.runtime.access import AccessLog

if TYPE_CHECKING:
    from appserver.config.model import Config
    from appserver.runtime.state import ServerState

# An incoming request id is used as given only if it is short and plain: it is written into
# log lines and echoed in a header, so nothing a client sends may forge either.
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=\-]{1,128}")


def wants_instruments(config: Config) -> bool:
    """Whether anything here is configured (else the plain protocol serves, at no cost)."""
    return bool(
        config.ops_paths
        or config.health_bind
        or config.access_log_format != "text"
        or config.request_id_header
    )


class Operations:
    """The operations side of one server (one process)."""

    def __init__(self, config: Config, state: ServerState) -> None:
        self.state = state
        root = config.root_path
        # Matched against scope["path"], which carries root_path (ASGI 2.x). The operations
        # listener (health.bind, metrics.bind) serves every route; the app's listeners those
        # not moved to it.
        self.ops_routes: dict[str, App] = {}
        self.routes: dict[str, App] = {}
        if config.health_path:
            self.ops_routes[root + config.health_path] = liveness_app()
        if config.readiness_path:
            self.ops_routes[root + config.readiness_path] = readiness_app(state)
        if config.health_bind is None:
            self.routes.update(self.ops_routes)
        self.metrics: Metrics | None = None
        self.snapshots: SnapshotDirectory | None = None
        self.name = f"worker-{os.getpid()}"
        if config.metrics_route:
            self.metrics = Metrics()
            metrics = rendered_app(self.render)
            self.ops_routes[root + config.metrics_route] = metrics
            if config.metrics_bind is None and config.health_bind is None:
                self.routes[root + config.metrics_route] = metrics
            directory = config._metrics_dir
            if directory is not None:
                self.snapshots = SnapshotDirectory(directory)
        self.log_probes = config.health_access_log
        header = config.request_id_header
        self.request_id_header = header.encode("latin-1") if header else None
        self.echo_request_id = config.request_id_echo
        self.access = AccessLog(config.access_log_format) if config.access_log else None

    # --- request ids -----------------------------------------------------------------------------
    def request_id(self, headers: list[tuple[bytes, bytes]]) -> str:
        """The id the configured header carries when well-formed, else a new random one."""
        name = self.request_id_header
        for key, value in headers:
            if key == name:
                if _REQUEST_ID.fullmatch(value):
                    return value.decode("ascii")
                break
        return os.urandom(16).hex()

    # --- metrics ---------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """This process's counters, with the gauges read off its connections now."""
        from appserver.runtime.http_protocol import HTTPProtocol

        http = websocket = in_flight = received = sent = 0
        for connection in self.state.connections:
            received += connection.bytes_received
            sent += connection.bytes_sent
            if isinstance(connection, HTTPProtocol):
                http += 1
                if connection.current is not None:
                    in_flight += 1
            else:
                websocket += 1
        metrics = self.metrics if self.metrics is not None else Metrics()
        snap = metrics.snapshot(
            requests_in_flight=in_flight,
            connections_http=http,
            connections_websocket=websocket,
        )
        snap["bytes_received"] += received
        snap["bytes_sent"] += sent
        return snap

    def render(self) -> tuple[bytes, bytes]:
        """The exposition for a scrape: this process live, the other workers as last written."""
        own = self.snapshot()
        if self.snapshots is None:
            return render(own)
        return render(merge([own, *self.snapshots.read(skip=self.name)]))

    def publish(self) -> None:
        """Leave this worker's snapshot for the others (once a second, and at exit)."""
        if self.snapshots is not None:
            self.snapshots.write(self.name, self.snapshot())
