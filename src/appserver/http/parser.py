"""The contract between a parser adapter and the connection that owns it.

An adapter turns request bytes into calls on a :class:`ParserSink`: ``on_request`` when a head
is complete, ``on_body`` for body bytes (de-chunked), ``on_request_end`` when the message is
complete. Header names arrive lower-cased. A malformed request raises :class:`BadRequest` out
of ``feed``. When ``on_request_end`` returns True the connection switches protocol: the adapter
stops parsing and hands what follows the request to ``on_switch``.
"""

from __future__ import annotations

from typing import Protocol

from appserver.errors import ProtocolError


class BadRequest(ProtocolError):
    """The client sent bytes that are not a valid HTTP/1.1 request."""


class ParserSink(Protocol):
    def on_request(
        self, method: bytes, target: bytes, http_version: str, headers: list[tuple[bytes, bytes]]
    ) -> None: ...

    def on_body(self, data: bytes) -> None: ...

    def on_request_end(self) -> bool: ...

    def on_switch(self, trailing: bytes) -> None: ...


class RequestParser(Protocol):
    """What both adapters provide."""

    def __init__(self, sink: ParserSink, max_head_size: int) -> None: ...

    def feed(self, data: bytes) -> None: ...
