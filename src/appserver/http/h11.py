"""h11 as a request parser: the pure-Python path, strict by design.

h11 is a full connection state machine; we only use its reading half. After each complete
request we start a fresh ``h11.Connection`` on the bytes that followed it (``trailing_data``),
so responses never pass through h11: the shared cycle frames them, and both parsers answer
with the same bytes.

The bytes of each head are kept until h11 has parsed it, for the checks llhttp makes and h11
does not (bare CR/LF, obs-fold, control characters: :func:`appserver.http.strict.check_raw_head`)
and to tell the cause of h11's own refusals apart the way the httptools adapter does.
"""

from __future__ import annotations

import re
from typing import Any

import h11

from appserver.http.limits import URI_TOO_LONG, HeadLimits
from appserver.http.parser import CLOSE, SWITCH, BadRequest, ParserSink
from appserver.http.strict import (
    NOT_IMPLEMENTED,
    ChunkedChecker,
    check_raw_head,
    check_request,
    check_version,
    transfer_coding_status,
)

_TRANSFER_ENCODING = re.compile(rb"(?im)^transfer-encoding[ \t]*:([^\r\n]*)")
_CONTENT_LENGTH = re.compile(rb"(?im)^content-length[ \t]*:([^\r\n]*)")


class H11Parser:
    __slots__ = ("_chunks", "_conn", "_head", "_limits", "_switched", "idle", "sink")

    def __init__(self, sink: ParserSink, limits: HeadLimits | None = None) -> None:
        self.sink = sink
        self._limits = limits or HeadLimits()
        self._conn = self._new_connection()
        self._switched = False
        self.idle = True
        # The bytes given to h11 since the current head began; None while a body is read.
        self._head: list[bytes] | None = []
        # Checks a chunked body's framing as llhttp would (h11 is laxer there); None otherwise.
        self._chunks: ChunkedChecker | None = None

    def _new_connection(self) -> h11.Connection:
        # h11 only bounds a head while it is incomplete; the bound is the most a valid head can
        # take, and check_head gives the precise verdict once it is complete.
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self._limits.max_head_bytes)

    def feed(self, data: bytes) -> None:
        if self._switched or not data:
            return  # (h11 takes b"" for the end of the stream; to us it is no news)
        conn = self._conn
        head = self._head
        if head is not None:
            if not head:
                # RFC 9112 §2.2: empty lines before a request line are ignored (llhttp does).
                data = data.lstrip(b"\r\n")
                if not data:
                    return
            head.append(data)
        elif self._chunks is not None:
            self._chunks.feed(data)
        conn.receive_data(data)
        self.idle = False
        sink = self.sink
        while True:
            try:
                # Any: mypy cannot narrow on `type(event) is`, which is the fast check.
                event: Any = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise self._error(exc) from None
            if event is h11.NEED_DATA:
                return
            event_type = type(event)
            if event_type is h11.Request:
                # raw_items() is a plain list; iterating the Headers sequence itself goes
                # through the slow generic Sequence.__iter__.
                headers = [(name.lower(), value) for name, value in event.headers.raw_items()]
                raw = self._take_head()
                raw = raw[: len(raw) - len(conn.trailing_data[0])]
                check_raw_head(raw)
                version = check_version(event.http_version.decode("ascii"))
                # h11 asks for Host in HTTP/1.1 only; served as 1.1, a 1.x request must have
                # one too (RFC 9112 §3.2).
                if (
                    version == "1.1"
                    and event.http_version != b"1.1"
                    and sum(name == b"host" for name, _ in headers) != 1
                ):
                    raise BadRequest("HTTP/1.1 requests need exactly one Host header")
                length, coded = self._check_head(event.method, event.target, headers)
                if length:
                    # h11 folds repeated equal Content-Lengths into one; llhttp refuses them.
                    values = _CONTENT_LENGTH.findall(raw)
                    if len(values) > 1 or b"," in values[0]:
                        raise BadRequest("invalid or repeated Content-Length")
                check_request(
                    event.method,
                    event.target,
                    version,
                    headers,
                    length or coded,
                    self._limits.body_size,
                )
                sink.on_request(event.method, event.target, version, headers)
                if coded:
                    # After on_request, as llhttp reports the head before it reads the body.
                    self._chunks = ChunkedChecker()
                    self._chunks.feed(conn.trailing_data[0])  # the body's bytes so far
            elif event_type is h11.Data:
                sink.on_body(bytes(event.data))
            elif event_type is h11.EndOfMessage:
                after = sink.on_request_end()
                if after == SWITCH:
                    self._switched = True
                    sink.on_switch(conn.trailing_data[0])
                    return
                if after == CLOSE:
                    self._switched = True  # no further request is read on this connection
                    return
                # A fresh connection for the next request on this one: see the module docstring.
                self._chunks = None
                trailing = conn.trailing_data[0].lstrip(b"\r\n")
                conn = self._conn = self._new_connection()
                self.idle = not trailing
                self._head = [trailing] if trailing else []
                if trailing:
                    conn.receive_data(trailing)
            elif event is h11.PAUSED:
                # An Upgrade we did not take: h11 waits for our answer; we serve it as HTTP and
                # parse on (RFC 9110 §7.8), as the EndOfMessage branch above already did.
                return
            elif event_type is h11.ConnectionClosed:
                return

    def _take_head(self) -> bytes:
        head = self._head
        self._head = None
        if not head:
            return b""
        return head[0] if len(head) == 1 else b"".join(head)

    def _error(self, exc: h11.RemoteProtocolError) -> BadRequest:
        if self._head:
            raw = b"".join(self._head)
            end = raw.find(b"\r\n\r\n")
            try:
                check_raw_head(raw if end < 0 else raw[: end + 4])
            except BadRequest as ours:
                return ours  # the verdict llhttp gives these, before h11's own
            if exc.error_status_hint == NOT_IMPLEMENTED:
                # h11 decodes chunked only. Which coding broke the rule decides the status,
                # as check_request decides it for llhttp: chunked not last, 400; else 501.
                codings = [
                    c.strip().lower()
                    for match in _TRANSFER_ENCODING.finditer(raw if end < 0 else raw[:end])
                    for c in match.group(1).split(b",")
                ]
                try:
                    transfer_coding_status(codings)
                except BadRequest as ours:
                    return ours
        if exc.error_status_hint == 431:
            # The head outgrew max_head_bytes before it was complete: the request line, if it
            # never ended, else the header fields (the verdicts httptools reaches as it reads).
            buffered = self._conn.trailing_data[0]
            if b"\n" not in buffered[: self._limits.request_line]:
                return BadRequest("request line too long", URI_TOO_LONG)
            return BadRequest("request head too large", 431)
        return BadRequest(str(exc))

    def _check_head(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]
    ) -> tuple[bool, bool]:
        """What h11 lets through but the httptools adapter refuses, refused the same way.
        Returns whether the head has a Content-Length and a Transfer-Encoding."""
        self._limits.check_head(method, target, headers)
        length = chunked = False
        for name, _ in headers:
            if name == b"content-length":
                length = True
            elif name == b"transfer-encoding":
                chunked = True
        if length and chunked:
            # RFC 9112 §6.1: both is a smuggling attempt; a server may reject it and must close
            # after it. h11 keeps the connection open, llhttp rejects: reject on both.
            raise BadRequest("both Content-Length and Transfer-Encoding")
        return length, chunked
