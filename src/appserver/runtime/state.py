"""``ServerState``: what every connection of one server shares (importable from appserver.server)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from appserver.http.cycle import DefaultHeaders
from appserver.http.parser import RequestParser
from appserver.ops.health import Readiness
from appserver.runtime.keepalive import KeepAliveTimers

if TYPE_CHECKING:
    from appserver.runtime.connection import Flusher
    from appserver.runtime.operations import Operations


class ServerState:
    """State shared by every connection of one server."""

    def __init__(self) -> None:
        self.total_requests = 0
        self.connections: set[Any] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        # Kept encoded for the hot path; assign default_headers to replace them.
        self.defaults = DefaultHeaders()
        # The connections' keep-alive timeouts, created by the first connection (it has the loop).
        self.keep_alive: KeepAliveTimers | None = None
        # The end-of-iteration flush of every connection, created by the first connection too.
        self.flusher: Flusher | None = None
        # Request parsers no connection holds: as many as were ever in use at once, at most.
        self.idle_parsers: list[RequestParser] = []
        # Readiness: STARTING until lifespan startup completed and the sockets are served,
        # DRAINING from the moment a shutdown begins (the readiness probe answers 503).
        self.readiness = Readiness.STARTING
        # timeouts.shutdown_delay under way: every response says connection: close.
        self.winding_down = False
        # The drain began (Server.shutdown): a connection made from now on drains at once.
        self.draining = False
        # The operations endpoints, metrics, request ids and access-line format (None when
        # none of them is configured), set by the server before it accepts.
        self.operations: Operations | None = None

    @property
    def default_headers(self) -> list[tuple[bytes, bytes]]:
        return self.defaults.pairs

    @default_headers.setter
    def default_headers(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.defaults.update(headers)
