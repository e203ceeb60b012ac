"""Strict HTTP/1.1: each rule of appserver.http.strict with raw sockets, on both parsers.

Every case asserts the status and whether the connection closed, and the same bytes go to
both parsers.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from tests.conftest import exchange, run, serve


async def app(scope: Any, receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    host = dict(scope["headers"]).get(b"host", b"-")
    out = b"%s|%s|%s|%s" % (scope["http_version"].encode(), scope["raw_path"], host, body)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": out})


POST = b"POST / HTTP/1.1\r\nHost: x\r\n"
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"
GET = b"GET / HTTP/1.1\r\nHost: x\r\n"

# name: (request, status, closed, body of a 200 or None)
CASES: dict[str, tuple[bytes, int, bool, bytes | None]] = {
    "plain": (GET + b"\r\n", 200, False, b"1.1|/|x|"),
    # Content-Length (RFC 9112 §6.3)
    "cl-sign": (POST + b"Content-Length: +5\r\n\r\nhello", 400, True, None),
    "cl-hex": (POST + b"Content-Length: 0x5\r\n\r\nhello", 400, True, None),
    "cl-list": (POST + b"Content-Length: 5, 6\r\n\r\nhello", 400, True, None),
    "cl-equal-list": (POST + b"Content-Length: 5, 5\r\n\r\nhello", 400, True, None),
    "cl-repeated": (POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400, True, None),
    "cl-and-te": (
        POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
        True,
        None,
    ),
    # Transfer-Encoding (RFC 9112 §6.1)
    "te-gzip-chunked": (
        POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        501,
        True,
        None,
    ),
    "te-chunked-gzip": (POST + b"Transfer-Encoding: chunked, gzip\r\n\r\nhello", 400, True, None),
    "te-unknown": (POST + b"Transfer-Encoding: foo\r\n\r\nhello", 400, True, None),
    "te-twice": (
        POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        True,
        None,
    ),
    "te-http-1.0": (
        b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
        True,
        None,
    ),
    "te-uppercase": (
        POST + b"Transfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        200,
        False,
        b"1.1|/|x|hello",
    ),
    # Field syntax (RFC 9110 §5, RFC 9112 §5)
    "space-before-colon": (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, True, None),
    "empty-name": (GET + b": v\r\n\r\n", 400, True, None),
    "nul-in-value": (GET + b"X-A: a\x00b\r\n\r\n", 400, True, None),
    "cr-in-value": (GET + b"X-A: a\rb\r\n\r\n", 400, True, None),
    "control-in-value": (GET + b"X-A: a\x01b\r\n\r\n", 400, True, None),
    "del-in-value": (GET + b"X-A: a\x7fb\r\n\r\n", 400, True, None),
    "obs-text-in-value": (GET + b"X-A: caf\xe9\r\n\r\n", 200, False, b"1.1|/|x|"),
    "bare-cr-after-line": (b"GET / HTTP/1.1\rHost: x\r\n\r\n", 400, True, None),
    "bare-cr-in-head": (b"GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", 400, True, None),
    "bare-lf": (b"GET / HTTP/1.1\nHost: x\n\n", 400, True, None),
    "obs-fold": (GET + b"X-A: a\r\n b\r\n\r\n", 400, True, None),
    # The request line and target (RFC 9112 §3)
    "nul-in-target": (b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n", 400, True, None),
    "space-in-target": (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400, True, None),
    "non-ascii-target": (b"GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", 400, True, None),
    "tab-separator": (b"GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, True, None),
    "two-sp-after-method": (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400, True, None),
    "two-sp-before-version": (b"GET /  HTTP/1.1\r\nHost: x\r\n\r\n", 400, True, None),
    "two-sp-in-a-value": (GET + b"X-A: a  b\r\n\r\n", 200, False, b"1.1|/|x|"),
    "trailing-space": (b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400, True, None),
    "lower-case-version": (b"GET / http/1.1\r\nHost: x\r\n\r\n", 400, True, None),
    "unknown-method": (b"get / HTTP/1.1\r\nHost: x\r\n\r\n", 400, True, None),
    "leading-empty-line": (b"\r\n" + GET + b"\r\n", 200, False, b"1.1|/|x|"),
    "asterisk": (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 200, False, b"1.1|*|x|"),
    "absolute-form-wins-over-host": (
        b"GET http://other:8080/p?q=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        200,
        False,
        b"1.1|/p|other:8080|",
    ),
    "absolute-form-no-authority": (b"GET http:// HTTP/1.1\r\nHost: x\r\n\r\n", 400, True, None),
    "absolute-form-no-scheme": (b"GET :// HTTP/1.1\r\nHost: x\r\n\r\n", 400, True, None),
    "absolute-form-userinfo": (
        b"GET http://user@other/p HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
        True,
        None,
    ),
    # Versions (RFC 9112 §2.3)
    "http-2.0": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, True, None),
    "http-3.0": (b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505, True, None),
    "http-1.2-served-as-1.1": (b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 200, False, b"1.1|/|x|"),
    "http-1.2-no-host": (b"GET / HTTP/1.2\r\n\r\n", 400, True, None),
    "http-1.0-no-host": (b"GET / HTTP/1.0\r\n\r\n", 200, True, b"1.0|/|-|"),
    # Host (RFC 9112 §3.2)
    "no-host": (b"GET / HTTP/1.1\r\n\r\n", 400, True, None),
    "two-hosts": (GET + b"Host: y\r\n\r\n", 400, True, None),
    "host-userinfo": (b"GET / HTTP/1.1\r\nHost: user@x\r\n\r\n", 400, True, None),
    "host-space": (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, True, None),
    "host-slash": (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, True, None),
    "host-bad-port": (b"GET / HTTP/1.1\r\nHost: x:abc\r\n\r\n", 400, True, None),
    "host-ipv6": (b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 200, False, b"1.1|/|[::1]:80|"),
    "host-empty": (b"GET / HTTP/1.1\r\nHost: \r\n\r\n", 200, False, b"1.1|/||"),
    # Chunked bodies (RFC 9112 §7.1)
    "chunk-negative": (CHUNKED + b"-5\r\nhello\r\n0\r\n\r\n", 400, True, None),
    "chunk-plus": (CHUNKED + b"+5\r\nhello\r\n0\r\n\r\n", 400, True, None),
    "chunk-0x": (CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n", 400, True, None),
    "chunk-leading-space": (CHUNKED + b" 5\r\nhello\r\n0\r\n\r\n", 400, True, None),
    "chunk-bad-terminator": (CHUNKED + b"5\r\nhelloXX0\r\n\r\n", 400, True, None),
    "chunk-space-after-size": (CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n", 400, True, None),
    "chunk-size-overflow": (CHUNKED + b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n", 400, True, None),
    "chunk-bare-lf": (CHUNKED + b"5\nhello\n0\n\n", 400, True, None),
    "chunk-extension": (CHUNKED + b"5;a=b\r\nhello\r\n0\r\n\r\n", 200, False, b"1.1|/|x|hello"),
    "trailer": (CHUNKED + b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", 200, False, b"1.1|/|x|hello"),
    "bad-trailer": (CHUNKED + b"5\r\nhello\r\n0\r\nX T: 1\r\n\r\n", 400, True, None),
}


@pytest.mark.parametrize("case", CASES)
def test_strict(http: str, case: str) -> None:
    request, status, closes, body = CASES[case]

    async def main() -> tuple[bytes, bool]:
        async with serve(app, http) as (_, port):
            return await exchange(port, request, timeout=1.0 if closes else 0.5)

    data, closed = run(main())
    assert data.startswith(b"HTTP/1.1 %d " % status), data[:200]
    assert closed is closes
    if body is not None:
        assert data.endswith(b"\r\n\r\n" + body)


@pytest.mark.parametrize(
    "case",
    [
        "chunk-negative",
        "chunk-size-overflow",
        "http-3.0",
        "http-1.2-served-as-1.1",
        "two-sp-after-method",
        "te-gzip-chunked",
        "obs-fold",
    ],
)
def test_strict_verdicts_hold_when_split_at_every_offset(http: str, case: str) -> None:
    request, status, _, _ = CASES[case]

    async def main() -> list[int]:
        statuses = []
        async with serve(app, http) as (_, port):
            for cut in range(1, len(request)):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                writer.write(request[:cut])
                await writer.drain()
                await asyncio.sleep(0.005)  # two reads on the server, not one
                writer.write(request[cut:])
                data = await asyncio.wait_for(reader.read(200), 2)
                statuses.append(int(data[9:12]))
                writer.close()
        return statuses

    assert set(run(main(), timeout=60)) == {status}


def _post(body: bytes) -> bytes:
    return POST + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


# Several requests in one write, so that one read holds them all: the verdict on each must be
# the one it gets alone. name: (requests, the statuses and bodies of the answers, closed)
PIPELINED: dict[str, tuple[bytes, list[tuple[int, bytes | None]], bool]] = {
    "http-1.2-behind-another": (
        GET + b"\r\n" + b"GET /b HTTP/1.2\r\nHost: x\r\n\r\n",
        [(200, b"1.1|/|x|"), (200, b"1.1|/b|x|")],
        False,
    ),
    "http-3.0-behind-another": (
        GET + b"\r\n" + b"GET / HTTP/3.0\r\nHost: x\r\n\r\n",
        [(200, b"1.1|/|x|"), (505, None)],
        True,
    ),
    "two-sp-behind-another": (
        GET + b"\r\n" + b"GET  /b HTTP/1.1\r\nHost: x\r\n\r\n",
        [(200, b"1.1|/|x|"), (400, None)],
        True,
    ),
    # A body that holds what looks like a request line is a body: never served, never judged.
    "look-alike-in-a-body-then-http-1.2": (
        _post(b"GET /no HTTP/1.2\r\nHost: x\r\n\r\n") + b"GET /b HTTP/1.2\r\nHost: x\r\n\r\n",
        [(200, b"1.1|/|x|GET /no HTTP/1.2\r\nHost: x\r\n\r\n"), (200, b"1.1|/b|x|")],
        False,
    ),
    "look-alike-with-two-sp-in-a-body": (
        _post(b"GET  /b HTTP/1.1\r\n") + b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n",
        [(200, b"1.1|/|x|GET  /b HTTP/1.1\r\n"), (200, b"1.1|/b|x|")],
        False,
    ),
}


def _answers(data: bytes) -> list[tuple[int, bytes]]:
    """Split responses with a Content-Length (all this app's and the server's errors have one)."""
    answers = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":", 1)[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
        )
        answers.append((int(head[9:12]), rest[:length]))
        data = rest[length:]
    return answers


@pytest.mark.parametrize("case", PIPELINED)
def test_strict_verdicts_hold_for_pipelined_requests(http: str, case: str) -> None:
    requests, expected, closes = PIPELINED[case]

    async def main() -> tuple[bytes, bool]:
        async with serve(app, http) as (_, port):
            return await exchange(port, requests, timeout=1.0 if closes else 0.5)

    data, closed = run(main())
    answers = _answers(data)
    assert [status for status, _ in answers] == [status for status, _ in expected]
    for (_, body), (_, want) in zip(answers, expected, strict=True):
        if want is not None:
            assert body == want
    assert closed is closes
