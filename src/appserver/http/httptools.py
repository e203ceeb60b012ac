"""httptools (llhttp) as a request parser: the fast path."""

from __future__ import annotations

import re
from typing import Final

import httptools

from appserver.http.limits import LINE_OVERHEAD, URI_TOO_LONG, HeadLimits
from appserver.http.parser import CLOSE, SWITCH, BadRequest, ParserSink
from appserver.http.strict import GOOD_HOSTS, KNOWN_METHODS, check_request, check_version

# A whole request line: (method SP target SP "HTTP/"), with (method), then (major "." minor).
_REQUEST_LINE: Final = re.compile(rb"(([!-~]+) [!-~]+ HTTP/)([0-9]\.[0-9])\r\n")
# The start of a request line that has not ended yet (a prefix of the above).
_LINE_SO_FAR: Final = re.compile(
    rb"[!-~]+(?: [!-~]*(?: (?:H(?:T(?:T(?:P(?:/(?:[0-9](?:\.(?:[0-9]\r?)?)?)?)?)?)?)?)?)?)?"
)


_OWS: Final = (0x20, 0x09)


def _parsed(data: bytes) -> tuple[bool, bool, _Boundaries]:
    """llhttp alone on ``data`` (which starts where a request starts): whether it refused it,
    whether it stopped at an upgrade, and the requests it began and completed before that."""
    counts = _Boundaries()
    try:
        httptools.HttpRequestParser(counts).feed_data(data)
    except httptools.HttpParserUpgrade:
        return False, True, counts
    except httptools.HttpParserError:
        return True, False, counts
    return False, False, counts


def _refused_request(data: bytes) -> tuple[int, int]:
    """Where the request llhttp refused in ``data`` starts, and the offset of the refused byte.

    llhttp's errors do not say where; it reads as a stream, so a prefix fails exactly when it
    holds that byte, and a bisection over prefixes finds it; a second one finds where the
    request before it completed. Only a refused version asks, so the cost is on that path.
    """
    good, bad = 0, len(data)
    while bad - good > 1:
        middle = (good + bad) // 2
        if _parsed(data[:middle])[0]:  # refused (an upgrade before any fault refuses nothing)
            bad = middle
        else:
            good = middle
    at = bad - 1
    before = _parsed(data[:at])[2].completed
    begin = 0
    if before:
        short, enough = 0, at  # data[:enough] completes `before` requests, data[:short] fewer
        while enough - short > 1:
            middle = (short + enough) // 2
            if _parsed(data[:middle])[2].completed >= before:
                enough = middle
            else:
                short = middle
        begin = enough
    while data[begin : begin + 1] in (b"\r", b"\n"):
        begin += 1  # empty lines before a request line are ignored (RFC 9112 §2.2)
    return begin, at


def _spaced_line(data: bytes, method: bytes, url: bytes, index: int) -> bool:
    """Whether ``data`` has this request's line with two or more SP between its parts.

    ``index`` >= 0: ``data`` starts where a request starts and this is its request number
    ``index``; a line that only looks like it (in a body or a field, or another request's
    with the same method and target) is told apart by parsing up to it. -1: the look is
    trusted (a refusal). A request may begin right after a body's last byte, so no line start
    is asked.
    """
    method, url = re.escape(method), re.escape(url)
    pattern = method + rb"(?:  +" + url + rb" +| +" + url + rb"  +)HTTP/"
    return any(
        index < 0 or _starts_request(data[: match.start()], index)
        for match in re.finditer(pattern, data)
    )


class _Boundaries:
    """Counts the requests llhttp begins and completes (see _starts_request)."""

    def __init__(self) -> None:
        self.begun = self.completed = 0

    def on_message_begin(self) -> None:
        self.begun += 1

    def on_message_complete(self) -> None:
        self.completed += 1


def _starts_request(data: bytes, index: int) -> bool:
    """Whether ``data``, which starts where a request starts, ends where its request number
    ``index`` (0: the first) starts."""
    refused, upgraded, counts = _parsed(data)
    return not (refused or upgraded) and counts.begun == counts.completed == index


class HttptoolsParser:
    __slots__ = (
        "_counted",
        "_fed",
        "_fed_heads",
        "_framing",
        "_head_fed",
        "_head_size",
        "_headers",
        "_held",
        "_host",
        "_hosts",
        "_in_head",
        "_limits",
        "_parser",
        "_request_start",
        "_request_start_heads",
        "_smallest",
        "_stopped",
        "_switched",
        "_switching",
        "_url",
        "idle",
        "sink",
    )

    def __init__(self, sink: ParserSink, limits: HeadLimits | None = None) -> None:
        self.sink = sink
        self.idle = True
        self._limits = limits or HeadLimits()
        self._in_head = False  # between on_message_begin and on_headers_complete
        self._head_fed = 0  # bytes fed while a head was arriving (see feed)
        self._request_start: bytes | None = None  # a split request's first bytes (see feed)
        self._request_start_heads = 0  # heads those bytes completed
        self._held: bytes | None = None  # see _version_refused
        limits = self._limits
        self._smallest = min(limits.request_line, limits.field_size, limits.head_size)
        self._counted = True  # whether the callbacks count the head's sizes (see feed)
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._hosts = 0
        self._framing = False  # a Content-Length or Transfer-Encoding in the head being read
        self._host: bytes | None = None  # its Host value
        self._switching = False
        self._switched = False
        self._stopped = False  # the sink said CLOSE: callbacks for what follows are ignored
        # For the request line check (see on_headers_complete): the bytes from the start of
        # the request whose head is being read, when known, and this read's bytes.
        self._fed = b""
        # The heads completed in _fed when it begins where a request begins, else -1 (see
        # on_headers_complete).
        self._fed_heads = -1

    def feed(self, data: bytes) -> None:
        if self._switched or self._stopped:
            return
        if self._held is not None:  # the start of a line held by _version_refused
            data, self._held = self._held + data, None
        # The bytes of the request being read, from its start, when known: this feed's if no
        # byte of a request came before it, else those kept by earlier feeds of a request split
        # over reads (when short). Only a refusal of llhttp's needs them (_version_refused).
        head = self._request_start
        if self.idle:
            start: bytes | None = data
            self._fed, self._fed_heads = data, 0
        elif head is not None:
            start = head + data
            self._fed, self._fed_heads = start, self._request_start_heads
        else:
            start = None
            self._fed, self._fed_heads = data, -1
        # Heads that come whole in bytes no longer than the smallest limit cannot break one:
        # the callbacks count only when a head may be longer (most never are).
        if start is not None and len(start) <= self._smallest:
            self._counted = False
        elif not self._counted:
            self._counted = True
            # The head under way was not counted so far: catch up.
            self._head_size = len(self._url) + sum(len(n) + len(v) for n, v in self._headers)
        # What is fed again is fed after the except blocks: an exception raised while one is
        # handled gets it as __context__, where a callback's BadRequest is looked for.
        again: bytes | None = None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            trailing = data[exc.args[0] :]
            if self._switching:
                self._switched = True
                self.sink.on_switch(trailing)
                return
            # An Upgrade we did not take: llhttp resumes, and so do we (RFC 9110 §7.8).
            again = trailing
        except httptools.HttpParserError as exc:
            if self._stopped:
                return  # llhttp refusing bytes after a request that closes: ignored anyway
            cause = exc.__context__  # what a callback of ours raised, status and all
            if isinstance(cause, BadRequest):
                raise cause from None
            again = self._version_refused(start)
            if again is None:
                raise BadRequest(str(exc) or "malformed request") from None
        if again is not None:
            if again:
                self.feed(again)
            return
        if self.idle:
            self._request_start = None
            return
        self._request_start = start if start is not None and len(start) <= 512 else None
        self._request_start_heads = self._fed_heads
        if self._in_head:
            # llhttp keeps the parts of a header line it has not finished on its own, without
            # a bound: count what was fed while a head is arriving (this feed's bytes may
            # include earlier requests; the bound leaves room for that).
            self._head_fed += len(data)
            if self._head_fed > self._limits.max_head_bytes:
                if not self._headers:
                    raise BadRequest("request line too long", URI_TOO_LONG)
                raise BadRequest("request head too large", 431)

    def _version_refused(self, start: bytes | None) -> bytes | None:
        """What to feed a new parser after llhttp refused a request's line, else None (400).

        h11's adapter judges a request line whole, the method, then the version
        (appserver.http.strict.check_raw_head); llhttp judges it byte by byte and knows
        HTTP/1.0, 1.1 and 2.0 only. So that both give one verdict: a line that has not ended
        is held until it does (b""); a line with a known method and HTTP/2+ is 505, whatever
        else is wrong; an HTTP/1.x line (x >= 2) refused at its version is rewritten to say
        1.1 and fed again. The line is found where llhttp stopped, never by pattern alone: a
        body may hold text that looks like a request line.
        """
        if start is None:
            return None
        begin, at = _refused_request(start)
        rest = start[begin:]
        if b"\n" not in rest:
            if len(rest) > self._limits.request_line or not _LINE_SO_FAR.fullmatch(rest):
                return None
            self._reset()
            self._held = rest  # judged again with the bytes that follow (see feed)
            return b""
        line = _REQUEST_LINE.match(start, begin)
        if line is None or line.group(2) not in KNOWN_METHODS:
            return None
        version = line.group(3)
        if version[:1] != b"1":
            check_version(version.decode("ascii"))  # 505 for HTTP/2+ (0.x: 400)
        if version in (b"1.0", b"1.1") or at < line.start(3):
            return None  # refused before the version (the target) or after the line
        self._reset()
        served = check_version(version.decode("ascii")).encode()
        return line.group(1) + served + start[line.end(3) :]

    def _reset(self) -> None:
        """A new llhttp parser, for bytes fed from a request's start."""
        self._parser = httptools.HttpRequestParser(self)
        self.idle = True
        self._in_head = False
        self._request_start = None
        self._url, self._headers, self._head_size, self._hosts = b"", [], 0, 0

    # --- llhttp callbacks ---------------------------------------------------------------------
    # State is reset when a head is handed on, not in on_message_begin, and the size checks are
    # inline, to keep Python calls per request few. llhttp has no head size limit of its own
    # (h11 has max_incomplete_event_size), so we count.
    def on_message_begin(self) -> None:
        if self._stopped:
            return
        # The only sign that a next request has started: llhttp reads its method without a
        # callback, and a parser that had read "GET " must not serve another connection.
        self.idle = False
        self._in_head = True
        self._head_fed = 0

    def on_url(self, url: bytes) -> None:
        if self._stopped:
            return
        self._url += url
        if self._counted:
            self._head_size += len(url)
            if len(self._url) > self._limits.request_line:  # the exact check is at the end
                raise BadRequest("request line too long", URI_TOO_LONG)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._stopped:
            return
        name = name.lower()
        if value and value[-1] in _OWS:
            value = value.rstrip(b" \t")  # RFC 9110 §5.5: not part of the value (h11 strips it)
        if name == b"host":
            self._hosts += 1
            self._host = value
        elif name == b"transfer-encoding":
            value = value.lower()  # h11 gives it lower-cased: the app sees one form
            self._framing = True
        elif name == b"content-length":
            self._framing = True
        self._headers.append((name, value))
        if self._counted:
            field = len(name) + len(value)
            self._head_size += field
            limits = self._limits
            # The count is checked when the head is complete: the bytes fed bound it meanwhile.
            if field > limits.field_size or self._head_size > limits.head_size:
                limits.check_field(field, self._head_size)

    def on_headers_complete(self) -> None:
        if self._stopped:
            return
        parser = self._parser
        url = self._url
        headers = self._headers
        hosts = self._hosts
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._hosts = 0
        self._in_head = False
        method = parser.get_method()
        if len(headers) > self._limits.header_count:
            raise BadRequest("too many header fields", 431)
        if self._counted and len(url) + len(method) + LINE_OVERHEAD > self._limits.request_line:
            raise BadRequest("request line too long", URI_TOO_LONG)
        # llhttp takes several SP between the parts of the request line as one; RFC 9112 §3
        # lets us refuse, and h11 does. The first head in _fed is where its request begins,
        # and its line there too unless empty lines came first (RFC 9112 §2.2; llhttp skips
        # them). A line that starts _fed (its method's first byte at 0) with one SP after the
        # method has its target right after that SP; " HTTP/" right after the target then
        # means one SP before the version too (the common case, a few cheap tests). Otherwise
        # the line is looked for (see _spaced_line).
        heads = self._fed_heads
        fed = self._fed
        version = ""
        if heads == 0:
            at = len(method) + len(url) + 1
            lined_up = len(fed) > at and fed[0] == method[0] and fed[len(method) + 1] != 32
            if lined_up and fed.startswith(b" HTTP/1.1", at):
                # The version llhttp read, seen in its line: get_http_version() would format
                # the same string anew ("{}.{}".format), a twentieth of a request's cost.
                version = "1.1"
            elif not (lined_up and fed.startswith(b" HTTP/", at)) and _spaced_line(
                fed, method, url, 0
            ):
                raise BadRequest("more than one SP between the parts of the request line")
        elif b"  " in fed and _spaced_line(fed, method, url, heads):
            raise BadRequest("more than one SP between the parts of the request line")
        if heads >= 0:
            self._fed_heads = heads + 1
        if not version:
            version = parser.get_http_version()
        # llhttp takes a request line without a version as HTTP/0.9, which RFC 9112 dropped;
        # and it does not check Host, which RFC 9112 §3.2 requires: exactly one in HTTP/1.1,
        # never more than one. h11 refuses both; so do we, on both parsers.
        if version != "1.1":
            version = check_version(version)  # 0.9 refused, 2.0 is 505
        if hosts != 1 and (hosts > 1 or version == "1.1"):
            raise BadRequest("HTTP/1.1 requests need exactly one Host header")
        framing = self._framing
        host = self._host
        self._framing = False
        self._host = None
        # The checks of appserver.http.strict, skipped for what they would pass at once: an
        # origin-form GET-like request with a Host seen before and no framing fields.
        if (
            framing
            or url[:1] != b"/"
            or method not in KNOWN_METHODS
            or (host is not None and host not in GOOD_HOSTS)
        ):
            check_request(method, url, version, headers, framing, self._limits.body_size)
        self.sink.on_request(method, url, version, headers)

    def on_body(self, body: bytes) -> None:
        if self._stopped:
            return
        self.sink.on_body(body)

    def on_message_complete(self) -> None:
        if self._stopped:
            return
        after = self.sink.on_request_end()
        self._switching = after == SWITCH
        if after == CLOSE:
            self._stopped = True
            self.idle = False  # never lent to another connection
            return
        # llhttp also closes on what our cycle does not read (Proxy-Connection: close) and
        # then refuses every further byte: such a parser must never serve another connection.
        self.idle = self._parser.should_keep_alive()
