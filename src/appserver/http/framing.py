"""Connection persistence and response body framing, as pure functions of the message heads.

Both parsers feed these, so the h11 and httptools paths make the same decisions.
"""

from __future__ import annotations

import enum


class Framing(enum.Enum):
    """How the response body is delimited on the wire (RFC 9112 section 6)."""

    NO_BODY = "no-body"  # HEAD, 1xx, 204, 304: whatever the app sends is dropped
    LENGTH = "length"  # Content-Length, enforced
    CHUNKED = "chunked"  # Transfer-Encoding: chunked
    CLOSE = "close"  # read until the connection closes (HTTP/1.0 clients only)


def request_keeps_alive(http_version: str, connection_close: bool) -> bool:
    """Whether the client lets us reuse the connection after this exchange (RFC 9112 §9.3).

    1. A ``close`` connection option ends the connection after the response.
    2. HTTP/1.1 persists by default.
    3. HTTP/1.0 persistence needs ``keep-alive``; like h11 we do not offer it, so both
       parsers behave the same and 1.0 clients get a close-delimited answer.
    """
    if connection_close:
        return False
    return http_version == "1.1"


def response_framing(
    status: int,
    head_request: bool,
    content_length: int | None,
    whole_body_known: bool,
    http_version: str,
) -> Framing:
    """Choose the response framing (RFC 9112 §6.1-6.3, RFC 9110 §6.4.1).

    1. Responses to HEAD and status 1xx, 204 and 304 carry no body, whatever their headers say.
    2. A Content-Length from the app is used as given (and enforced by the cycle).
    3. When the first body message is also the last, the cycle adds a Content-Length itself.
    4. Otherwise HTTP/1.1 clients get chunked coding.
    5. HTTP/1.0 clients cannot decode chunked: the body ends when the connection closes.
    """
    if head_request or status < 200 or status in (204, 304):
        return Framing.NO_BODY
    if content_length is not None or whole_body_known:
        return Framing.LENGTH
    if http_version == "1.1":
        return Framing.CHUNKED
    return Framing.CLOSE
