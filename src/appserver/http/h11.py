"""h11 as a request parser: the pure-Python path, strict by design.

h11 is a full connection state machine; we only use its reading half. After each complete
request we start a fresh ``h11.Connection`` on the bytes that followed it (``trailing_data``),
so responses never pass through h11: the shared cycle frames them, and both parsers answer
with the same bytes.
"""

from __future__ import annotations

from typing import Any

import h11

from appserver.http.parser import BadRequest, ParserSink


class H11Parser:
    __slots__ = ("_conn", "_max_head_size", "_switched", "idle", "sink")

    def __init__(self, sink: ParserSink, max_head_size: int = 64 * 1024) -> None:
        self.sink = sink
        self._max_head_size = max_head_size
        self._conn = self._new_connection()
        self._switched = False
        self.idle = True

    def _new_connection(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_head_size)

    def feed(self, data: bytes) -> None:
        if self._switched:
            return
        conn = self._conn
        conn.receive_data(data)
        self.idle = False
        sink = self.sink
        while True:
            try:
                # Any: mypy cannot narrow on `type(event) is`, which is the fast check.
                event: Any = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise BadRequest(str(exc)) from None
            if event is h11.NEED_DATA:
                return
            event_type = type(event)
            if event_type is h11.Request:
                # raw_items() is a plain list; iterating the Headers sequence itself goes
                # through the slow generic Sequence.__iter__.
                headers = [(name.lower(), value) for name, value in event.headers.raw_items()]
                self._check_head(event.target, headers)
                sink.on_request(
                    event.method, event.target, event.http_version.decode("ascii"), headers
                )
            elif event_type is h11.Data:
                sink.on_body(bytes(event.data))
            elif event_type is h11.EndOfMessage:
                if sink.on_request_end():
                    self._switched = True
                    sink.on_switch(conn.trailing_data[0])
                    return
                # A fresh connection for the next request on this one: see the module docstring.
                trailing = conn.trailing_data[0]
                conn = self._conn = self._new_connection()
                self.idle = not trailing
                if trailing:
                    conn.receive_data(trailing)
            elif event is h11.PAUSED:
                # An Upgrade we did not take: h11 waits for our answer; we serve it as HTTP and
                # parse on (RFC 9110 §7.8), as the EndOfMessage branch above already did.
                return
            elif event_type is h11.ConnectionClosed:
                return

    def _check_head(self, target: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """What h11 lets through but the httptools adapter refuses, refused the same way."""
        # max_incomplete_event_size only bounds a head still incomplete: a large head that
        # arrives in one read passes. Count what the httptools adapter counts instead.
        size = len(target)
        length = chunked = False
        for name, value in headers:
            size += len(name) + len(value)
            if name == b"content-length":
                length = True
            elif name == b"transfer-encoding":
                chunked = True
        if size > self._max_head_size:
            raise BadRequest("request head too large")
        if length and chunked:
            # RFC 9112 §6.1: both is a smuggling attempt; a server may reject it and must close
            # after it. h11 keeps the connection open, llhttp rejects: reject on both.
            raise BadRequest("both Content-Length and Transfer-Encoding")
