"""Response heads as bytes: status lines, app headers checked once, canned error responses."""

from __future__ import annotations

import http
import re
from collections.abc import Iterable
from typing import Any, Final

from appserver.errors import ProtocolError

_STATUS_LINES: Final[dict[int, bytes]] = {}
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 §5.5: field values are visible characters, spaces and tabs; CR, LF and NUL never.
_FIELD_VALUE: Final = re.compile(rb"[^\x00-\x08\x0a-\x1f\x7f]*")
# Header names the app commonly sends, already checked and lower-cased: most responses skip
# the regex entirely.
_NAMES: Final[dict[bytes, bytes]] = {}
_NAMES_MAX: Final = 512

CONTINUE_100: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 599:  # RFC 9110 §15: three digits, classes 1xx to 5xx
            raise ProtocolError(f"invalid response status {status!r}")
        try:
            phrase = http.HTTPStatus(status).phrase.encode("ascii")
        except ValueError:
            phrase = b""
        line = b"HTTP/1.1 %d %s\r\n" % (status, phrase)
        _STATUS_LINES[status] = line
    return line


def _lower_name(name: Any) -> bytes:
    # ``Any``, not bytes: the app's value is checked here, by us (compiled, a bytes annotation
    # would have mypyc raise its own TypeError first).
    lowered = _NAMES.get(name)
    if lowered is None:
        if not isinstance(name, bytes) or not _TOKEN.fullmatch(name):
            raise ProtocolError(f"invalid response header name {name!r}")
        lowered = name.lower()
        if len(_NAMES) < _NAMES_MAX:
            _NAMES[name] = lowered
    return lowered


def _decimal(digits: bytes) -> int:
    """The value of ASCII digits. Compiled, a loop over a short one is a few C operations;
    int() of bytes is a generic call that also parses signs and underscores."""
    if len(digits) > 18:  # beyond a machine word: let int() do the long arithmetic
        return int(digits)
    value = 0
    for i in range(len(digits)):
        value = value * 10 + digits[i] - 48
    return value


# What the response head needs to know about the app's headers, from one pass: a plain tuple
# (a NamedTuple costs a Python-level __new__ per response) of
#   encoded: bytes            b"name: value\r\n" lines as the app gave them, minus Transfer-Encoding
#   content_length: int|None  the app's Content-Length
#   chunked: bool             the app asked for Transfer-Encoding: chunked
#   close: bool               the app sent Connection: close
#   overrides: frozenset      default header names the app set itself ("server", "date")
AppHeaders = tuple[bytes, int | None, bool, bool, frozenset[bytes]]


_NO_OVERRIDES: Final[frozenset[bytes]] = frozenset()


# Header lines already checked, keyed by the app's (name, value) tuple: frameworks send the same
# content-type and cache-control pairs on every response, and a dict hit is cheaper than the
# regexes. Only headers with no framing meaning are cached; the cache stops growing when full.
_CHECKED_LINES: Final[dict[tuple[bytes, bytes], bytes]] = {}
_CHECKED_LINES_MAX: Final = 2048
_SPECIAL: Final = frozenset(
    (b"content-length", b"transfer-encoding", b"connection", b"server", b"date")
)


def scan_headers(headers: Iterable[Any]) -> AppHeaders:
    """Check and encode the app's response headers in one pass.

    Raises ProtocolError for names that are not tokens, values with CR, LF or NUL (response
    splitting), and an unusable Content-Length or Transfer-Encoding.
    """
    lines = []
    content_length: int | None = None
    chunked = False
    close = False
    overrides = _NO_OVERRIDES
    cache = _CHECKED_LINES
    for item in headers:
        if type(item) is tuple and len(item) == 2:
            line = cache.get(item)
            if line is not None:
                lines.append(line)
                continue
            # Indexing a tuple, compiled, is a C access; unpacking goes through the iterator
            # protocol.
            name = item[0]
            value = item[1]
        else:
            try:
                name, value = item
            except (TypeError, ValueError):
                raise ProtocolError(f"invalid response header {item!r}") from None
        lowered = _lower_name(name)
        if lowered == b"content-length" and type(value) is bytes:
            # RFC 9110 §8.6: 1*DIGIT (int() would also take "+5" and "1_0"); digits
            # cannot split a response, so the value regex is not needed either.
            digits = value
            if not digits.isdigit():
                digits = value.strip(b" \t")
                if not digits.isdigit():
                    raise ProtocolError(f"invalid Content-Length {value!r}")
            length = _decimal(digits)
            if content_length is not None and length != content_length:
                raise ProtocolError(f"invalid Content-Length {value!r}")
            content_length = length
            # Pieces of the joined head rather than a formatted line: one allocation fewer.
            lines += (name, b": ", digits, b"\r\n")
            continue
        if not isinstance(value, bytes) or not _FIELD_VALUE.fullmatch(value):
            raise ProtocolError(f"invalid value for response header {name!r}: {value!r}")
        line = b"%s: %s\r\n" % (name, value)
        if lowered not in _SPECIAL:
            if type(item) is tuple and len(cache) < _CHECKED_LINES_MAX:
                cache[item] = line
        elif lowered == b"transfer-encoding":
            # We frame the body ourselves; only chunked, the one coding we apply, is accepted.
            if value.strip().lower() != b"chunked":
                raise ProtocolError(f"unsupported Transfer-Encoding {value!r}")
            chunked = True
            continue
        elif lowered == b"connection":
            close = close or b"close" in value.lower()
        else:  # server, date: the app's own replace the defaults
            overrides = overrides | {lowered}
        lines.append(line)
    if chunked and content_length is not None:
        # RFC 9112 §6.3: never both. The length is the one we can check.
        chunked = False
    return b"".join(lines), content_length, chunked, close, overrides


def encode_default_headers(
    headers: Iterable[tuple[bytes, bytes]], skip: frozenset[bytes] = _NO_OVERRIDES
) -> bytes:
    return b"".join(b"%s: %s\r\n" % (name, value) for name, value in headers if name not in skip)


def error_response(status: int, default_headers: bytes) -> bytes:
    """The server's own answer to a request it refuses (400, 408, 413, 414, 431, 501, 505),
    with the reason phrase as its body; 400 keeps uvicorn's words."""
    if status == 400:
        return simple_response(400, b"Invalid HTTP request received.", default_headers)
    phrase = http.HTTPStatus(status).phrase.encode("ascii")
    return simple_response(status, phrase + b".", default_headers)


def simple_response(status: int, body: bytes, default_headers: bytes, close: bool = True) -> bytes:
    """A complete text/plain response: 400, 500 and 503 look the same on both parsers."""
    return b"".join(
        (
            status_line(status),
            default_headers,
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n" if close else b"\r\n",
            body,
        )
    )
