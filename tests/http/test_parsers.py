"""The parser adapters alone (sans-IO): when they may serve another connection (``idle``)."""

from __future__ import annotations

from typing import Any

import pytest

from appserver.http.h11 import H11Parser
from appserver.http.httptools import HttptoolsParser
from appserver.http.limits import HeadLimits
from appserver.http.parser import UNATTACHED, RequestParser

ADAPTERS = {"h11": H11Parser, "httptools": HttptoolsParser}
GET = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
POST = b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
CHUNKED = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"


class Sink:
    """Records what a parser reports."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def on_request(
        self, method: bytes, target: bytes, http_version: str, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.events.append(("request", method, target))

    def on_body(self, data: bytes) -> None:
        self.events.append(("body", data))

    def on_request_end(self) -> int:
        self.events.append(("end",))
        return 0  # CONTINUE

    def on_switch(self, trailing: bytes) -> None:
        raise AssertionError("no upgrade here")


@pytest.fixture(params=sorted(ADAPTERS))
def make(request: pytest.FixtureRequest) -> Any:
    return lambda sink: ADAPTERS[request.param](sink, HeadLimits())


@pytest.mark.parametrize("message", [GET, POST, CHUNKED])
def test_idle_only_between_requests(make: Any, message: bytes) -> None:
    """Every byte of a request, the first of the next one included, makes the parser busy."""
    parser: RequestParser = make(Sink())
    assert parser.idle
    stream = message + message
    for i in range(1, len(stream) + 1):
        parser.feed(stream[i - 1 : i])
        assert parser.idle is (i in (len(message), len(stream))), i


@pytest.mark.parametrize("trailing", [b"G", b"GET", b"GET ", b"GET /a", b"GET /a HTTP/1.1\r\n"])
def test_not_idle_with_the_next_request_begun_in_the_same_read(make: Any, trailing: bytes) -> None:
    parser: RequestParser = make(Sink())
    parser.feed(GET + trailing)
    assert not parser.idle


def test_an_idle_parser_serves_another_sink_as_if_new(make: Any) -> None:
    first, second = Sink(), Sink()
    parser: RequestParser = make(first)
    parser.feed(POST)
    assert parser.idle
    parser.sink = UNATTACHED
    parser.sink = second
    parser.feed(GET)
    assert first.events == [("request", b"POST", b"/b"), ("body", b"abc"), ("end",)]
    assert second.events == [("request", b"GET", b"/a"), ("end",)]


def test_unattached_parser_refuses_to_report(make: Any) -> None:
    parser: RequestParser = make(UNATTACHED)
    with pytest.raises(Exception) as info:  # httptools wraps what a callback raises
        parser.feed(GET)
    chain: BaseException | None = info.value
    messages = []
    while chain is not None:
        messages.append(str(chain))
        chain = chain.__context__
    assert "an unattached parser was fed" in messages


@pytest.mark.parametrize(
    "message",
    [
        b"GET /a HTTP/1.1\r\nHost: x\r\nProxy-Connection: close\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /a HTTP/1.0\r\n\r\n",
    ],
)
def test_a_parser_that_will_not_read_on_is_never_idle(message: bytes) -> None:
    # llhttp refuses every byte after a request that asked to close (Proxy-Connection
    # included, which the cycle does not read): lent to another connection, it would answer
    # that connection's first request with 400.
    parser = HttptoolsParser(Sink(), HeadLimits())
    parser.feed(message)
    assert not parser.idle


class VersionSink(Sink):
    def on_request(
        self, method: bytes, target: bytes, http_version: str, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.events.append((target, http_version))


VERSIONED = (
    b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
    b"GET /b HTTP/1.0\r\n\r\n"  # 1.0 does not keep the connection: the last one read
)


@pytest.mark.parametrize(
    "stream",
    [
        VERSIONED,
        b"\r\n" + VERSIONED,  # an empty line before a request line is allowed (RFC 9112 §2.2)
        b"GET /HTTP/1.1 HTTP/1.1\r\nHost: x\r\n\r\nGET /HTTP/1.1 HTTP/1.0\r\n\r\n",
    ],
)
@pytest.mark.parametrize("step", [1, 7, 10_000])
def test_each_request_gets_its_own_version(make: Any, stream: bytes, step: int) -> None:
    """The httptools adapter reads "1.1" from the request line where it can (cheaper than
    llhttp's get_http_version()): whatever the reads, each request reports its own."""
    sink = VersionSink()
    parser: RequestParser = make(sink)
    for i in range(0, len(stream), step):
        parser.feed(stream[i : i + step])
    targets = [event for event in sink.events if event[0] != "end"]
    first = b"/HTTP/1.1" if b"/HTTP/1.1" in stream else b"/a"
    second = b"/HTTP/1.1" if b"/HTTP/1.1" in stream else b"/b"
    assert targets == [(first, "1.1"), (second, "1.0")]
