"""Property: both parser adapters give every input the same verdict and the same events.

Requests are generated valid, then mutated (a byte flipped, bytes inserted, the tail cut) and
fed whole or split at an offset, to the h11 and the httptools adapter with their production
checks; they must agree on each request's head and body, and on the refusal and its status,
and never raise anything but BadRequest. CI runs a fixed seed and a few thousand examples;
``HYPOTHESIS_PROFILE=long`` runs many more.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appserver.http.h11 import H11Parser
from appserver.http.httptools import HttptoolsParser
from appserver.http.limits import HeadLimits
from appserver.http.parser import CLOSE, CONTINUE, BadRequest

settings.register_profile(
    "ci",
    max_examples=3000,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long", max_examples=100_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


class Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def on_request(
        self, method: bytes, target: bytes, version: str, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.events.append(("head", method, target, version, tuple(headers)))
        self.events.append(["body", b""])
        # What the connection decides from the same head (http.cycle): close after 1.0 or a
        # close option.
        self.close = version != "1.1" or any(
            name in (b"connection", b"proxy-connection") and b"close" in value.lower()
            for name, value in headers
        )

    def on_body(self, data: bytes) -> None:
        self.events[-1][1] += data

    def on_request_end(self) -> int:
        self.events.append(("end",))
        return CLOSE if self.close else CONTINUE

    def on_switch(self, trailing: bytes) -> None:
        raise AssertionError("no upgrades are generated")


def run_parser(parser_class: Any, pieces: list[bytes]) -> tuple[list[Any], int | None]:
    sink = Recorder()
    parser = parser_class(sink, HeadLimits())
    try:
        for piece in pieces:
            parser.feed(piece)
    except BadRequest as exc:
        return sink.events, exc.status
    return sink.events, None


token = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"HEAD"])
path = st.lists(
    st.sampled_from([b"a", b"b", b"%20", b"-", b".", b"~", b"1"]), min_size=0, max_size=6
).map(lambda parts: b"/" + b"".join(parts))
query = st.one_of(st.just(b""), st.just(b"?x=1&y=%2F"))
# Mostly the two versions served as they are, sometimes one served as 1.1 or refused with 505.
versions = st.sampled_from([b"1.1"] * 4 + [b"1.0"] * 2 + [b"1.2", b"2.0", b"3.0"])
field_names = st.sampled_from([b"X-A", b"Accept", b"User-Agent", b"x-b", b"Cookie"])
field_values = st.sampled_from([b"1", b"text/html", b"a b", b"caf\xe9", b"", b"x;y=z"])


@st.composite
def request(draw: Any) -> bytes:
    method = draw(token)
    head = method + b" " + draw(path) + draw(query) + b" HTTP/" + draw(versions)
    head += b"\r\nHost: " + draw(st.sampled_from([b"x", b"example.com:8080", b"[::1]"])) + b"\r\n"
    for _ in range(draw(st.integers(0, 3))):
        head += draw(field_names) + b": " + draw(field_values) + b"\r\n"
    body = b""
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    payload = draw(st.binary(max_size=20))
    if framing == "length":
        head += b"Content-Length: %d\r\n" % len(payload)
        body = payload
    elif framing == "chunked" and b"HTTP/1.1" in head:
        head += b"Transfer-Encoding: chunked\r\n"
        body = (b"%x\r\n%s\r\n" % (len(payload), payload) if payload else b"") + b"0\r\n\r\n"
    return head + b"\r\n" + body


@st.composite
def mutated(draw: Any) -> bytes:
    data = b"".join(draw(st.lists(request(), min_size=1, max_size=3)))
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["flip", "insert", "space", "cut", "none"]))
        if not data or kind == "none":
            continue
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
        elif kind == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=3)) + data[at:]
        elif kind == "space":
            data = data[:at] + b" " + data[at:]
        else:
            data = data[:at]
    return data


@given(data=mutated(), split=st.integers(0, 10_000))
def test_adapters_agree(data: bytes, split: int) -> None:
    # An empty line after the input completes a head left open (by a cut, say): h11 gives its
    # verdict on a head only once it is complete, llhttp as it reads, and the server ends an
    # open head with timeouts.header_read either way.
    data += b"\r\n\r\n"
    cut = split % (len(data) + 1)
    pieces = [data[:cut], data[cut:]]
    h11_events, h11_verdict = run_parser(H11Parser, pieces)
    llhttp_events, llhttp_verdict = run_parser(HttptoolsParser, pieces)
    assert h11_verdict == llhttp_verdict
    if h11_verdict is None:
        assert h11_events == llhttp_events
    else:
        # Refused: the same requests were complete before the refusal.
        complete = lambda events: [e for e in events if e[0] == "head"]  # noqa: E731
        assert complete(h11_events) == complete(llhttp_events)


@pytest.mark.parametrize(
    "data",
    [
        # Where the request line does not start the read (empty lines first, RFC 9112 §2.2) or
        # more than one SP follows the method, the line's parts are not where method and
        # target lengths put them: a CONNECT target may itself begin with "HTTP/1.1".
        b"\r\n" * 5 + b"CONNECT HTTP/1.1x HTTP/1.0\r\nHost: x\r\n\r\n",
        b"\r\n" * 6 + b"CONNECT HTTP/1.1:80 HTTP/1.0\r\n\r\n",
        b"CONNECT" + b" " * 10 + b"HTTP/1.1 HTTP/1.0\r\nHost: x\r\n\r\n",
        b"CONNECT  HTTP/1.1:80 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\r\nGET / HTTP/1.0\r\n\r\n",
        b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
@pytest.mark.parametrize("step", [1, 10_000])
def test_adapters_agree_where_the_line_is_not_where_it_seems(data: bytes, step: int) -> None:
    pieces = [data[i : i + step] for i in range(0, len(data), step)]
    h11 = run_parser(H11Parser, pieces)
    llhttp = run_parser(HttptoolsParser, pieces)
    assert llhttp == h11
