"""Limits and timeouts against a real server with raw sockets, on both parsers.

Each case asserts the status the server answers and whether it closed the connection. Timeouts
are set short here; the assertions bound hangs, they do not measure speed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from appserver.http.parser import BadRequest
from tests.conftest import exchange, read_until_close, run, serve, tasks_gone

WAIT = 3.0
calls: list[str] = []


async def reading_app(scope: Any, receive: Any, send: Any) -> None:
    """Reads the whole body, answers its size."""
    calls.append(scope["path"])
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message["body"])
        if not message["more_body"]:
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"%d" % size})


def status_of(data: bytes) -> int:
    assert data.startswith(b"HTTP/1.1 "), data[:80]
    return int(data[9:12])


def answer(http: str, request: bytes, **settings: Any) -> tuple[int, bool, bytes]:
    calls.clear()

    async def main() -> tuple[bytes, bool]:
        async with serve(reading_app, http, **settings) as (_, port):
            return await exchange(port, request, WAIT)

    data, closed = run(main())
    return status_of(data), closed, data


def head_with(headers: list[bytes], target: bytes = b"/") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + b"".join(headers) + b"\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "settings", "status"),
    [
        # limits.request_line: 8 KiB by default.
        (head_with([], b"/" + b"a" * 8200), {}, 414),
        (head_with([], b"/" + b"a" * 8100) + b"", {}, 200),
        (head_with([], b"/" + b"a" * 1000), {"limit_request_line": 1024}, 200),
        (head_with([], b"/" + b"a" * 1020), {"limit_request_line": 1024}, 414),
        # limits.header_count: 100 by default (Host counts).
        (head_with([b"x-%d: v\r\n" % i for i in range(99)]), {}, 200),
        (head_with([b"x-%d: v\r\n" % i for i in range(100)]), {}, 431),
        (head_with([b"x-%d: v\r\n" % i for i in range(5)]), {"limit_header_count": 5}, 431),
        # limits.header_field_size: 8 KiB by default (name and value).
        (head_with([b"x-a: " + b"v" * 8000 + b"\r\n"]), {}, 200),
        (head_with([b"x-a: " + b"v" * 8200 + b"\r\n"]), {}, 431),
        # limits.header_size: 64 KiB in all.
        (head_with([b"x-%d: " % i + b"v" * 7000 + b"\r\n" for i in range(9)]), {}, 200),
        (head_with([b"x-%d: " % i + b"v" * 7000 + b"\r\n" for i in range(10)]), {}, 431),
        (
            head_with([b"x-%d: " % i + b"v" * 500 + b"\r\n" for i in range(3)]),
            {"limit_header_size": 1024},
            431,
        ),
    ],
    ids=lambda value: None if isinstance(value, bytes | dict | int) else str(value),
)
def test_head_limits(
    http: str, request_bytes: bytes, settings: dict[str, Any], status: int
) -> None:
    got, closed, _ = answer(
        http, request_bytes + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", **settings
    )
    assert got == status
    assert closed
    if status != 200:
        assert calls == []  # the app never saw it


@pytest.mark.parametrize(
    ("start", "filler", "status"),
    [
        # Bytes that never end a header line: refused once the head outgrows what any valid
        # head can be, not buffered for ever.
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: ", b"v", 431),
        # The same for a request line that never ends.
        (b"GET /", b"a", 414),
    ],
    ids=["header-line", "request-line"],
)
def test_head_limits_hold_for_a_head_arriving_slowly(
    http: str, start: bytes, filler: bytes, status: int
) -> None:
    async def main() -> tuple[bytes, bool]:
        async with serve(reading_app, http) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(start)
            try:
                for _ in range(100):
                    writer.write(filler * 4096)
                    await writer.drain()
            except ConnectionError:
                pass
            data, closed = await read_until_close(reader, WAIT)
            writer.close()
            return data, closed

    data, closed = run(main())
    assert status_of(data) == status
    assert closed


@pytest.mark.parametrize(
    ("body_request", "status"),
    [
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789", 200),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n0123456789a", 413),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n",
            200,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\n01234\r\n6\r\n56789a\r\n0\r\n\r\n",
            413,
        ),
    ],
    ids=["length-at-limit", "length-over", "chunked-at-limit", "chunked-over"],
)
def test_body_size(http: str, body_request: bytes, status: int) -> None:
    got, closed, data = answer(
        http,
        body_request + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        limit_body_size=10,
    )
    assert got == status
    assert closed
    if status == 413:
        assert data.count(b"HTTP/1.1 ") == 1  # closed after the 413: the next request is not read
        assert b"Entity Too Large." in data  # http.HTTPStatus words on 3.11


def test_declared_length_over_the_limit_is_refused_before_the_app_runs(http: str) -> None:
    got, closed, _ = answer(
        http,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\nabc",
        limit_body_size=1024,
    )
    assert (got, closed) == (413, True)
    assert calls == []


def test_keep_alive_requests(http: str) -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    _, closed, data = answer(http, request * 3, limit_keep_alive_requests=2)
    assert closed
    first, second = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert b"connection: close" not in first
    assert b"connection: close" in second  # the last one allowed says so


def test_header_read_timeout_answers_408_to_a_partial_head(http: str) -> None:
    got, closed, _ = answer(
        http, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1", timeout_header_read=0.3
    )
    assert (got, closed) == (408, True)


def test_header_read_timeout_closes_a_silent_connection(http: str) -> None:
    async def main() -> tuple[bytes, bool]:
        async with serve(reading_app, http, timeout_header_read=0.3) as (_, port):
            return await exchange(port, b"")

    data, closed = run(main())
    assert (data, closed) == (b"", True)


def test_header_read_timeout_counts_from_the_first_byte_of_a_keep_alive_request(
    http: str,
) -> None:
    # A partial second head on a keep-alive connection: header_read, not keep_alive, applies.
    got, closed, data = answer(
        http,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHo",
        timeout_header_read=0.3,
        timeout_keep_alive=60,
    )
    assert got == 200 and closed
    assert b"HTTP/1.1 408 Request Timeout\r\n" in data


def test_body_read_timeout(http: str) -> None:
    async def main() -> None:
        async with serve(reading_app, http, timeout_body_read=0.3) as (server, port):
            data, closed = await exchange(
                port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n012"
            )
            assert status_of(data) == 408 and closed
            await tasks_gone(server)  # the app's receive() got http.disconnect

    run(main())


def test_write_timeout_drops_a_client_that_never_reads(http: str) -> None:
    sent: list[int] = []

    async def big_app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"x" * 65536
        for _ in range(800):  # 50 MiB
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent.append(1)
        await send({"type": "http.response.body", "body": b""})

    async def main() -> None:
        async with serve(big_app, http, timeout_write=0.3) as (server, port):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAIT
            while server.server_state.connections:
                assert loop.time() < deadline, "a client that never reads was not dropped"
                await asyncio.sleep(0.05)
            await tasks_gone(server)
            assert len(sent) < 800  # the app's send() stopped with the connection
            writer.close()

    run(main())


SMALL = {"request_line": 64, "field_size": 64, "head_size": 256}


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (head_with([b"x-a: " + b"v" * 50 + b"\r\n"]), None),
        (head_with([b"x-a: " + b"v" * 70 + b"\r\n"]), 431),  # one field over 64
        (head_with([b"x-%d: " % i + b"v" * 55 + b"\r\n" for i in range(4)]), None),
        (head_with([b"x-%d: " % i + b"v" * 55 + b"\r\n" for i in range(5)]), 431),  # > 256 in all
        (head_with([], b"/" + b"a" * 60), 414),
        # Small fields first, in the bytes of the first read, then enough to pass 256 by one:
        # the first ones count too.
        (
            head_with(
                [b"a: 1\r\n"] * 4
                + [b"x-%d: " % i + b"v" * 57 + b"\r\n" for i in range(4)]
                + [b"bb: c\r\n"]
            ),
            431,
        ),
        (
            head_with(
                [b"a: 1\r\n"] * 4
                + [b"x-%d: " % i + b"v" * 57 + b"\r\n" for i in range(4)]
                + [b"bb: \r\n"]
            ),
            None,
        ),
    ],
    ids=["field-fits", "field-over", "head-fits", "head-over", "line-over", "by-one", "at-limit"],
)
def test_head_limits_hold_however_the_head_is_split(
    request_bytes: bytes, status: int | None
) -> None:
    """The httptools adapter counts sizes only once a head may exceed the smallest limit; a head
    that grows past it over several reads is counted from its start all the same."""
    from appserver.http.h11 import H11Parser
    from appserver.http.httptools import HttptoolsParser
    from appserver.http.limits import HeadLimits
    from tests.http.test_parser_agreement import Recorder

    def verdict(parser_class: Any, pieces: list[bytes]) -> int | None:
        parser = parser_class(Recorder(), HeadLimits(**SMALL))
        try:
            for piece in pieces:
                parser.feed(piece)
        except BadRequest as exc:
            return exc.status
        return None

    data = request_bytes
    for parser_class in (H11Parser, HttptoolsParser):
        for cut in range(len(data) + 1):
            for second in range(cut, len(data) + 1, 7):
                pieces = [data[:cut], data[cut:second], data[second:]]
                assert verdict(parser_class, pieces) == status, (parser_class, cut, second)
