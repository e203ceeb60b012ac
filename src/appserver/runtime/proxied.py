"""``proxy_protocol = true`` on a listener: each connection starts with a PROXY header.

:func:`with_proxy_protocol` makes, once per protocol class, a subclass that reads the PROXY
preamble (:mod:`appserver.http.proxy_protocol`) before handing bytes to the HTTP parser. The
plain classes stay as they are, so listeners without the PROXY protocol pay nothing for it.

Only a peer in ``proxy.trusted`` (forwarded_allow_ips) may send the header: it decides the
client address every log line and every app sees, so a connection from anyone else is closed
at once (HAProxy's and nginx's ``set_real_ip_from`` rule; uvicorn has no PROXY support). A
missing or malformed header closes the connection too: there is no way to answer in HTTP a
peer that does not speak it yet. Until the header is complete the connection is NEW, so
timeouts.header_read bounds a proxy that sends half of one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from appserver.http.proxy_protocol import ProxyProtocolError, parse_preamble
from appserver.runtime.http_protocol import HTTPProtocol
from appserver.runtime.logs import logger

_made: dict[type[Any], type[Any]] = {}


def with_proxy_protocol(base: type[HTTPProtocol]) -> type[HTTPProtocol]:
    """``base``, reading a PROXY protocol header first on every connection."""
    found = _made.get(base)
    if found is None:
        found = _made[base] = type(
            f"PROXY{base.__name__}",
            (_ReadsPreamble, base),
            {"__slots__": (), "__module__": __name__},
        )
    return found


class _ReadsPreamble(HTTPProtocol):
    # No slots of its own: HTTPProtocol holds _preamble, so that this class and the
    # instrumented one can both be bases of one protocol class (two bases adding slots to the
    # same base have conflicting layouts).
    __slots__ = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        HTTPProtocol.connection_made(self, transport)
        self._preamble: bytes | None = b""
        info = self.info
        peers = self.config._require_loaded().proxy_peers
        if info is not None and info.client is None and info.server is not None:
            return  # a Unix socket: whoever may open it (its file mode says) is the proxy
        if info is None or info.client is None or info.client[0] not in peers:
            peer = info.client[0] if info is not None and info.client is not None else "?"
            logger.warning("PROXY protocol header from %s, not a trusted proxy: closed", peer)
            self.close_transport()

    def data_received(self, data: bytes) -> None:
        pending = self._preamble
        if pending is None:
            super().data_received(data)  # the instrumented protocol's, when it is one
            return
        if self.transport is None:
            return
        pending += data
        try:
            parsed = parse_preamble(pending)
        except ProxyProtocolError as exc:
            logger.debug("Closed a connection: %s", exc)
            self._preamble = None
            self.close_transport()
            return
        if parsed is None:
            self._preamble = pending
            return
        preamble, size = parsed
        self._preamble = None
        info = self.info
        if info is not None and preamble.client is not None:
            info.client = preamble.client
            info.server = preamble.server
            # X-Forwarded-* are believed from the client only if it is a trusted proxy too.
            trusted = self._trusted
            info.proxy = trusted if trusted is not None and preamble.client[0] in trusted else None
        rest = pending[size:]
        if rest:
            super().data_received(rest)
