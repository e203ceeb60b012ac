"""Request head limits, applied the same way by both parser adapters.

Every number comes from the configuration (``limits.*``); the defaults follow nginx, gunicorn,
HAProxy and Envoy (see the reference). Both adapters call :meth:`HeadLimits.check_head` when
a head is complete, so a head gets the same verdict from h11 and httptools; each adapter also
bounds a head that is still arriving (httptools in its callbacks, h11 through its incomplete
event size), so a client cannot make us buffer more than ``max_head_bytes`` before the verdict.

Statuses (RFC 9110 §15.5.14, §15.5.15, RFC 6585 §5): a body over the limit is 413, a request
line too long is 414, too many or too large header fields are 431.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from appserver.http.parser import BadRequest

CONTENT_TOO_LARGE: Final = 413
URI_TOO_LONG: Final = 414
HEADERS_TOO_LARGE: Final = 431

# "METHOD SP target SP HTTP/1.1": what the line holds besides the method and the target.
LINE_OVERHEAD: Final = 10


@dataclass(frozen=True, slots=True)
class HeadLimits:
    request_line: int = 8 * 1024
    header_count: int = 100
    field_size: int = 8 * 1024
    head_size: int = 64 * 1024
    # limits.body_size, checked against a Content-Length in the head (check_request); a
    # chunked body is counted as it arrives, by the connection.
    body_size: int | None = None

    @property
    def max_head_bytes(self) -> int:
        """The most bytes a valid head can take on the wire (a bound, with room for syntax)."""
        return self.request_line + self.head_size + 4 * self.header_count + 4

    def check_head(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """Raise :class:`BadRequest` (414, 431) when a complete head breaks a limit."""
        if len(method) + len(target) + LINE_OVERHEAD > self.request_line:
            raise BadRequest("request line too long", URI_TOO_LONG)
        if len(headers) > self.header_count:
            raise BadRequest("too many header fields", HEADERS_TOO_LARGE)
        size = len(target)
        field_size = self.field_size
        for name, value in headers:
            field = len(name) + len(value)
            if field > field_size:
                raise BadRequest("header field too large", HEADERS_TOO_LARGE)
            size += field
        if size > self.head_size:
            raise BadRequest("request head too large", HEADERS_TOO_LARGE)

    def check_field(self, field: int, size: int) -> None:
        """The same limits for a head still arriving: the latest field ``field`` bytes long,
        ``size`` bytes of target and fields in all (the field count is checked at the end of
        the head; the bytes fed bound it meanwhile)."""
        if field > self.field_size:
            raise BadRequest("header field too large", HEADERS_TOO_LARGE)
        if size > self.head_size:
            raise BadRequest("request head too large", HEADERS_TOO_LARGE)
