"""Raw bytes in, exact bytes out, against a real server, on both parsers.

Every case is run on each parser and compared with the exact bytes expected, and then run on
both parsers at once to check they answer byte for byte the same (STYLE.md principle 2).
``date_header=False`` makes the answers deterministic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest

from appserver.http import cycle as cycle_module
from tests.conftest import PARSERS, exchange, read_exactly_or_close, read_until_close, run, serve


@pytest.fixture(autouse=True, params=["shortcut", "no-shortcut"])
def whole_body_shortcut(request: pytest.FixtureRequest) -> Any:
    """Every wire test runs with and without the whole-body shortcut of RequestCycle.on_send:
    both ways must put the same bytes on the wire."""
    previous = cycle_module.WHOLE_BODY_SHORTCUT
    cycle_module.WHOLE_BODY_SHORTCUT = request.param == "shortcut"
    yield
    cycle_module.WHOLE_BODY_SHORTCUT = previous


BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"server: appserver\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 30\r\n"
    b"connection: close\r\n"
    b"\r\n"
    b"Invalid HTTP request received."
)
HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"server: appserver\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 32\r\n"
    b"connection: close\r\n"
    b"\r\n"
    b"Request Header Fields Too Large."
)
SERVER_ERROR = (
    b"HTTP/1.1 500 Internal Server Error\r\n"
    b"server: appserver\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 21\r\n"
    b"connection: close\r\n"
    b"\r\n"
    b"Internal Server Error"
)
HELLO = (
    b"HTTP/1.1 200 OK\r\n"
    b"server: appserver\r\n"
    b"content-type: text/plain\r\n"
    b"content-length: 13\r\n"
    b"\r\n"
    b"Hello, world!"
)
HELLO_CLOSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"server: appserver\r\n"
    b"content-type: text/plain\r\n"
    b"content-length: 13\r\n"
    b"connection: close\r\n"
    b"\r\n"
    b"Hello, world!"
)
GET_CLOSE = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


async def read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        assert message["type"] == "http.request"
        body += message["body"]
        if not message["more_body"]:
            return body


async def app(scope: Any, receive: Any, send: Any) -> None:
    """One app for every case, routed on the path below root_path."""
    assert scope["type"] == "http"
    route = scope["path"][len(scope["root_path"]) :]
    if route == "/echo":
        body = await read_body(receive)
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"x/y")]}
        )
        await send({"type": "http.response.body", "body": body})
    elif route == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for chunk in (b"a", b"bc", b""):
            await send({"type": "http.response.body", "body": chunk, "more_body": bool(chunk)})
    elif route == "/error-before":
        raise RuntimeError("before the response")
    elif route == "/error-mid":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("in the middle of the response")
    elif route == "/error-after":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})
        raise RuntimeError("after the response, like Starlette re-raising or a background task")
    elif route.startswith("/length/"):
        # /length/<declared>/<sent>[/stream]: a Content-Length the body does not keep.
        _, _, declared, sent, *stream = route.split("/")
        headers = [(b"content-length", declared.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if stream:
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            await send({"type": "http.response.body", "body": b"y" * (int(sent) - 1)})
        else:
            await send({"type": "http.response.body", "body": b"x" * int(sent)})
    elif route == "/headers":
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [(b"Server", b"mine"), (b"X-App", b"1")],
            }
        )
        await send({"type": "http.response.body", "body": b""})
    elif route.startswith("/scope"):
        client = scope["client"]
        info = {
            "client": client[0],
            "client_port_set": client[1] != 0,
            "scheme": scope["scheme"],
            "http_version": scope["http_version"],
            "method": scope["method"],
            "root_path": scope["root_path"],
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query_string": scope["query_string"].decode("latin-1"),
        }
        body = json.dumps(info, sort_keys=True).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
    else:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"Hello, world!"})


def json_response(info: dict[str, Any]) -> bytes:
    body = json.dumps(info, sort_keys=True).encode()
    return (
        b"HTTP/1.1 200 OK\r\nserver: appserver\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
        % (len(body), body)
    )


# (request, expected response bytes, whether the server closes the connection after them).
# Requests that leave the connection open are followed by one with Connection: close, so
# "closed" is observed as EOF rather than waited for.
CASES: dict[str, tuple[bytes, bytes, bool]] = {
    "get": (GET_CLOSE, HELLO_CLOSE, True),
    "head": (
        b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        # The head a GET would get, no body (RFC 9110 §9.3.2).
        HELLO_CLOSE[: -len(b"Hello, world!")],
        True,
    ),
    "http-1.0": (
        b"GET / HTTP/1.0\r\n\r\n",
        # We do not offer HTTP/1.0 keep-alive (framing.request_keeps_alive).
        HELLO_CLOSE,
        True,
    ),
    "http-1.0-streamed": (
        b"GET /stream HTTP/1.0\r\n\r\n",
        # No chunked coding for 1.0: the body ends with the connection (RFC 9112 §6.3).
        b"HTTP/1.1 200 OK\r\nserver: appserver\r\nconnection: close\r\n\r\nabc",
        True,
    ),
    "keep-alive-then-close": (
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + GET_CLOSE,
        HELLO + HELLO_CLOSE,
        True,
    ),
    "pipelined": (
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
        b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        HELLO + b"HTTP/1.1 200 OK\r\nserver: appserver\r\ntransfer-encoding: chunked\r\n\r\n"
        b"1\r\na\r\n2\r\nbc\r\n0\r\n\r\n"
        + HELLO[: -len(b"Hello, world!")]
        + b"HTTP/1.1 200 OK\r\nserver: appserver\r\ncontent-type: x/y\r\ncontent-length: 3\r\n"
        b"connection: close\r\n\r\nabc",
        True,
    ),
    "chunked-request": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nserver: appserver\r\ncontent-type: x/y\r\ncontent-length: 5\r\n"
        b"connection: close\r\n\r\nabcde",
        True,
    ),
    "chunked-response": (
        b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nserver: appserver\r\ntransfer-encoding: chunked\r\n"
        b"connection: close\r\n\r\n1\r\na\r\n2\r\nbc\r\n0\r\n\r\n",
        True,
    ),
    "connection-close-after-keep-alive": (
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        # The second request is never answered: the first said close.
        HELLO_CLOSE,
        True,
    ),
    "app-headers": (
        b"GET /headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        # The app's Server replaces ours; its names keep their case.
        b"HTTP/1.1 201 Created\r\nServer: mine\r\nX-App: 1\r\ncontent-length: 0\r\n"
        b"connection: close\r\n\r\n",
        True,
    ),
    # --- malformed requests: 400 and close --------------------------------------------------------
    "garbage": (b"\x00\x01garbage\r\n\r\n", BAD_REQUEST, True),
    "bad-header-name": (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", BAD_REQUEST, True),
    "space-before-colon": (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", BAD_REQUEST, True),
    # RFC 9112 §3 lets a recipient split the request line on any whitespace; we take one SP,
    # as h11 does (llhttp alone takes several).
    "two-sp-request-line": (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", BAD_REQUEST, True),
    "missing-host": (b"GET / HTTP/1.1\r\n\r\n", BAD_REQUEST, True),
    "two-hosts": (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", BAD_REQUEST, True),
    "http-0.9": (b"GET /\r\n\r\n", BAD_REQUEST, True),
    # CVE-2025-43859 class: chunk data not followed by CRLF.
    "chunk-lf-terminator": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n",
        BAD_REQUEST,
        True,
    ),
    "chunk-junk-terminator": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n",
        BAD_REQUEST,
        True,
    ),
    "bad-chunk-size": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        BAD_REQUEST,
        True,
    ),
    "conflicting-content-length": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        BAD_REQUEST,
        True,
    ),
    "content-length-and-chunked": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
        BAD_REQUEST,
        True,
    ),
    "bad-content-length": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        BAD_REQUEST,
        True,
    ),
    "unknown-transfer-coding": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        BAD_REQUEST,
        True,
    ),
    "oversized-head": (
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
        HEADERS_TOO_LARGE,
        True,
    ),
    "non-ascii-target": (b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", BAD_REQUEST, True),
    "good-then-malformed": (
        # Pipelined: the good request is answered first, then the 400 (answers stay in order).
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00garbage\r\n\r\n",
        HELLO + BAD_REQUEST,
        True,
    ),
    "good-then-malformed-body": (
        # The bad chunk belongs to a pipelined request still waiting its turn: it is dropped
        # and answered 400 after the good one.
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n",
        HELLO + BAD_REQUEST,
        True,
    ),
    # --- app failures -------------------------------------------------------------------------------
    "error-before-start": (
        b"GET /error-before HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        SERVER_ERROR,
        True,
    ),
    "error-mid-stream": (
        b"GET /error-mid HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        # Cut short: no last chunk, and the connection closes so the client can tell.
        b"HTTP/1.1 200 OK\r\nserver: appserver\r\ntransfer-encoding: chunked\r\n\r\n4\r\npart\r\n",
        True,
    ),
    "error-after-complete": (
        # The response was whole: the connection stays usable (unlike uvicorn, which closes).
        b"GET /error-after HTTP/1.1\r\nHost: x\r\n\r\n" + GET_CLOSE,
        b"HTTP/1.1 200 OK\r\nserver: appserver\r\ncontent-length: 2\r\n\r\nok" + HELLO_CLOSE,
        True,
    ),
    "content-length-overrun": (
        # Nothing was written yet (the head waits for the first body): a clean 500.
        b"GET /length/5/10 HTTP/1.1\r\nHost: x\r\n\r\n" + GET_CLOSE,
        SERVER_ERROR,
        True,
    ),
    "content-length-short": (
        b"GET /length/10/5 HTTP/1.1\r\nHost: x\r\n\r\n" + GET_CLOSE,
        SERVER_ERROR,
        True,
    ),
    "content-length-overrun-streamed": (
        # The head and one byte are out: the only honest signal left is closing.
        b"GET /length/5/10/stream HTTP/1.1\r\nHost: x\r\n\r\n" + GET_CLOSE,
        b"HTTP/1.1 200 OK\r\nserver: appserver\r\ncontent-length: 5\r\n\r\nx",
        True,
    ),
    "content-length-short-streamed": (
        b"GET /length/10/5/stream HTTP/1.1\r\nHost: x\r\n\r\n" + GET_CLOSE,
        b"HTTP/1.1 200 OK\r\nserver: appserver\r\ncontent-length: 10\r\n\r\nx",
        True,
    ),
    # --- targets --------------------------------------------------------------------------------------
    "percent-encoded-path-and-query": (
        b"GET /scope/a%20b/c%2Fd/caf%C3%A9?x=1&y=%20&z HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        json_response(
            {
                "client": "127.0.0.1",
                "client_port_set": True,
                "scheme": "http",
                "http_version": "1.1",
                "method": "GET",
                "root_path": "",
                "path": "/scope/a b/c/d/café",
                "raw_path": "/scope/a%20b/c%2Fd/caf%C3%A9",
                "query_string": "x=1&y=%20&z",
            }
        ),
        True,
    ),
    # RFC 9112 §2.2 lets a recipient accept a bare LF, §5.2 lets it unfold obs-fold: both
    # parsers refuse them (appserver.http.strict makes h11 refuse what llhttp refuses).
    "bare-lf-head": (b"GET / HTTP/1.1\nHost: x\nConnection: close\n\n", BAD_REQUEST, True),
    "obs-fold": (
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\nConnection: close\r\n\r\n",
        BAD_REQUEST,
        True,
    ),
    "absolute-form-target": (
        b"GET http://example.com/scope?q HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
        json_response(
            {
                "client": "127.0.0.1",
                "client_port_set": True,
                "scheme": "http",
                "http_version": "1.1",
                "method": "GET",
                "root_path": "",
                "path": "/scope",
                "raw_path": "/scope",
                "query_string": "q",
            }
        ),
        True,
    ),
}


async def wire(http: str, request: bytes, **kw: Any) -> tuple[bytes, bool]:
    async with serve(app, http, **kw) as (_, port):
        return await exchange(port, request, timeout=2.0)


@pytest.mark.parametrize("case", CASES)
def test_wire(http: str, case: str) -> None:
    request, expected, closes = CASES[case]
    out, closed = run(wire(http, request))
    assert out == expected
    assert closed is closes


@pytest.mark.parametrize("case", CASES)
def test_both_parsers_answer_the_same(case: str) -> None:
    request, _, _ = CASES[case]

    async def both() -> list[tuple[bytes, bool]]:
        return [await wire(http, request) for http in PARSERS]

    h11_out, httptools_out = run(both())
    assert h11_out == httptools_out


def test_split_into_single_bytes(http: str) -> None:
    """A request that arrives one byte per read parses the same as one sent whole."""
    request = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )

    async def main() -> tuple[bytes, bool]:
        async with serve(app, http) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                for i in range(len(request)):
                    writer.write(request[i : i + 1])
                    await writer.drain()
                    await asyncio.sleep(0)
                return await read_until_close(reader, 2.0)
            finally:
                writer.close()

    out, closed = run(main())
    assert out == (
        b"HTTP/1.1 200 OK\r\nserver: appserver\r\ncontent-type: x/y\r\ncontent-length: 3\r\n"
        b"connection: close\r\n\r\nabc"
    )
    assert closed


# --- configuration-dependent cases --------------------------------------------------------------


def test_custom_and_server_headers(http: str) -> None:
    out, _ = run(wire(http, GET_CLOSE, headers=[("X-Custom", "yes"), ("X-Other", "a b")]))
    assert out == (
        b"HTTP/1.1 200 OK\r\nserver: appserver\r\nx-custom: yes\r\nx-other: a b\r\n"
        b"content-type: text/plain\r\ncontent-length: 13\r\nconnection: close\r\n\r\nHello, world!"
    )


def test_server_header_off(http: str) -> None:
    out, _ = run(wire(http, GET_CLOSE, server_header=False))
    assert out == HELLO_CLOSE.replace(b"server: appserver\r\n", b"")


def test_custom_server_header_replaces_ours(http: str) -> None:
    out, _ = run(wire(http, GET_CLOSE, headers=[("Server", "edge")]))
    assert out == HELLO_CLOSE.replace(b"server: appserver", b"server: edge")


PROXIED = (
    b"GET /scope HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7, 10.0.0.2\r\n"
    b"X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n"
)


def scope_info(client: str, scheme: str, **kw: Any) -> dict[str, Any]:
    info = {
        "client": client,
        "client_port_set": client == "127.0.0.1",
        "scheme": scheme,
        "http_version": "1.1",
        "method": "GET",
        "root_path": "",
        "path": "/scope",
        "raw_path": "/scope",
        "query_string": "",
    }
    info.update(kw)
    return info


@pytest.mark.parametrize(
    ("allow", "client", "scheme"),
    [
        # The peer (127.0.0.1) and 10.0.0.2 are trusted: the client is the next one left.
        (["127.0.0.1", "10.0.0.0/8"], "203.0.113.7", "https"),
        # Only the peer is trusted: 10.0.0.2 is the right-most untrusted address.
        (["127.0.0.1"], "10.0.0.2", "https"),
        (["*"], "203.0.113.7", "https"),
        # The peer is not trusted: the headers are ignored.
        (["10.0.0.1"], "127.0.0.1", "http"),
    ],
)
def test_proxy_headers(http: str, allow: list[str], client: str, scheme: str) -> None:
    out, _ = run(wire(http, PROXIED, forwarded_allow_ips=allow))
    assert out == json_response(scope_info(client, scheme))


def test_proxy_headers_disabled(http: str) -> None:
    out, _ = run(wire(http, PROXIED, proxy_headers=False, forwarded_allow_ips=["*"]))
    assert out == json_response(scope_info("127.0.0.1", "http"))


def test_root_path(http: str) -> None:
    request = b"GET /scope/x%2F?a=b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out, _ = run(wire(http, request, root_path="/api"))
    info = scope_info(
        "127.0.0.1",
        "http",
        root_path="/api",
        path="/api/scope/x/",
        raw_path="/api/scope/x%2F",
        query_string="a=b",
    )
    assert out == json_response(info)


# --- Expect: 100-continue --------------------------------------------------------------------------

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
EXPECT_HEAD = (
    b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
    b"Connection: close\r\n\r\n"
)


async def expect_continue(http: str, path: bytes) -> tuple[bytes, bytes, bool]:
    """Send a head with Expect; return (what came before the body was sent, the rest, closed)."""
    async with serve(app, http) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(EXPECT_HEAD % path)
            first = await read_exactly_or_close(reader, len(CONTINUE), timeout=0.5)
            if first == CONTINUE:
                writer.write(b"hello")
            rest, closed = await read_until_close(reader, 2.0)
            return first, rest, closed
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def test_expect_continue_when_app_reads(http: str) -> None:
    first, rest, closed = run(expect_continue(http, b"/echo"))
    assert first == CONTINUE
    assert rest == (
        b"HTTP/1.1 200 OK\r\nserver: appserver\r\ncontent-type: x/y\r\ncontent-length: 5\r\n"
        b"connection: close\r\n\r\nhello"
    )
    assert closed


def test_no_continue_when_app_answers_without_reading(http: str) -> None:
    # The app never asks for the body: no 100, and the body is never sent. The answer
    # closes the connection (the unread body would otherwise be taken for the next request).
    first, rest, closed = run(expect_continue(http, b"/"))
    assert first + rest == HELLO_CLOSE
    assert closed


def test_no_continue_for_http_1_0(http: str) -> None:
    # RFC 9110 §10.1.1: a server must not send 100 to an HTTP/1.0 client.
    request = b"POST /echo HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello"
    out, closed = run(wire(http, request))
    assert out == (
        b"HTTP/1.1 200 OK\r\nserver: appserver\r\ncontent-type: x/y\r\ncontent-length: 5\r\n"
        b"connection: close\r\n\r\nhello"
    )
    assert closed
