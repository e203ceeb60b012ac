"""httptools (llhttp) as a request parser: the fast path."""

from __future__ import annotations

import httptools

from appserver.http.parser import BadRequest, ParserSink


class HttptoolsParser:
    __slots__ = (
        "_head_size",
        "_headers",
        "_hosts",
        "_max_head_size",
        "_parser",
        "_switched",
        "_switching",
        "_url",
        "idle",
        "sink",
    )

    def __init__(self, sink: ParserSink, max_head_size: int = 64 * 1024) -> None:
        self.sink = sink
        self.idle = True
        self._max_head_size = max_head_size
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._hosts = 0
        self._switching = False
        self._switched = False

    def feed(self, data: bytes) -> None:
        if self._switched:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            trailing = data[exc.args[0] :]
            if self._switching:
                self._switched = True
                self.sink.on_switch(trailing)
            elif trailing:
                # An Upgrade we did not take: llhttp resumes, and so do we (RFC 9110 §7.8).
                self.feed(trailing)
        except httptools.HttpParserError as exc:
            raise BadRequest(str(exc) or "malformed request") from None

    # --- llhttp callbacks ---------------------------------------------------------------------
    # State is reset when a head is handed on, not in on_message_begin, and the size checks are
    # inline, to keep Python calls per request few. llhttp has no head size limit of its own
    # (h11 has max_incomplete_event_size), so we count.
    def on_message_begin(self) -> None:
        # The only sign that a next request has started: llhttp reads its method without a
        # callback, and a parser that had read "GET " must not serve another connection.
        self.idle = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > self._max_head_size:
            raise BadRequest("request head too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"host":
            self._hosts += 1
        self._headers.append((name, value))
        self._head_size += len(name) + len(value)
        if self._head_size > self._max_head_size:
            raise BadRequest("request head too large")

    def on_headers_complete(self) -> None:
        parser = self._parser
        url = self._url
        headers = self._headers
        hosts = self._hosts
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._hosts = 0
        version = parser.get_http_version()
        # llhttp takes a request line without a version as HTTP/0.9, which RFC 9112 dropped;
        # and it does not check Host, which RFC 9112 §3.2 requires: exactly one in HTTP/1.1,
        # never more than one. h11 refuses both; so do we, on both parsers.
        if version == "0.9":
            raise BadRequest("HTTP/0.9 is not supported")
        if hosts != 1 and (hosts > 1 or version == "1.1"):
            raise BadRequest("HTTP/1.1 requests need exactly one Host header")
        self.sink.on_request(parser.get_method(), url, version, headers)

    def on_body(self, body: bytes) -> None:
        self.sink.on_body(body)

    def on_message_complete(self) -> None:
        self._switching = self.sink.on_request_end()
        # llhttp also closes on what our cycle does not read (Proxy-Connection: close) and
        # then refuses every further byte: such a parser must never serve another connection.
        self.idle = self._parser.should_keep_alive()
