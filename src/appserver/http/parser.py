"""The contract between a parser adapter and the connection that owns it.

An adapter turns request bytes into calls on a :class:`ParserSink`: ``on_request`` when a head
is complete, ``on_body`` for body bytes (de-chunked), ``on_request_end`` when the message is
complete. Header names arrive lower-cased. A malformed request raises :class:`BadRequest` out
of ``feed``. ``on_request_end`` says what comes next: :data:`CONTINUE` (parse the next request),
:data:`SWITCH` (the connection switches protocol: the adapter stops parsing and hands what follows
the request to ``on_switch``) or :data:`CLOSE` (the connection closes after this request, so the
adapter ignores whatever follows: RFC 9112 §9.6, a server MUST NOT process further requests).

Between requests an adapter holds nothing of the connection it served: once ``idle`` (the last
request complete and not one byte of the next read), it can be given another ``sink`` and parse
another connection's requests exactly as it would have parsed that connection's next one. The
runtime does that so idle keep-alive connections do not each keep a parser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol

from appserver.errors import ProtocolError

if TYPE_CHECKING:
    from appserver.http.limits import HeadLimits


# What on_request_end returns.
CONTINUE: Final = 0
SWITCH: Final = 1
CLOSE: Final = 2


class BadRequest(ProtocolError):
    """The client sent bytes that are not a valid HTTP/1.1 request; ``status`` is the answer
    (400 unless a more precise 4xx or 5xx applies: 408, 413, 414, 431, 501, 505)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ParserSink(Protocol):
    def on_request(
        self, method: bytes, target: bytes, http_version: str, headers: list[tuple[bytes, bytes]]
    ) -> None: ...

    def on_body(self, data: bytes) -> None: ...

    def on_request_end(self) -> int: ...

    def on_switch(self, trailing: bytes) -> None: ...


class RequestParser(Protocol):
    """What both adapters provide."""

    sink: ParserSink
    # True when no request is in progress: the last one is complete (or none came yet) and no
    # byte of the next one has been read.
    idle: bool

    def __init__(self, sink: ParserSink, limits: HeadLimits) -> None: ...

    def feed(self, data: bytes) -> None: ...


class _Unattached:
    """The sink of a parser waiting for a connection; a parser waiting is never fed."""

    def on_request(
        self, method: bytes, target: bytes, http_version: str, headers: list[tuple[bytes, bytes]]
    ) -> None:
        raise RuntimeError("an unattached parser was fed")

    def on_body(self, data: bytes) -> None:
        raise RuntimeError("an unattached parser was fed")

    def on_request_end(self) -> int:
        raise RuntimeError("an unattached parser was fed")

    def on_switch(self, trailing: bytes) -> None:
        raise RuntimeError("an unattached parser was fed")


UNATTACHED: Final[ParserSink] = _Unattached()
