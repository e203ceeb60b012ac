"""What the app sends is checked before it reaches the wire; what the client sends is escaped
before it reaches the access log."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from appserver.runtime.access import escape
from tests.conftest import exchange, run, serve

SERVER_ERROR_HEAD = b"HTTP/1.1 500 Internal Server Error\r\n"


def responding(status: Any = 200, headers: Any = ()) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        await send({"type": "http.response.body", "body": b"body"})

    return app


@pytest.mark.parametrize(
    ("status", "headers", "logged"),
    [
        (99, [], "invalid response status 99"),
        (600, [], "invalid response status 600"),
        (1000, [], "invalid response status 1000"),
        ("200", [], "response status must be an int"),
        (200, [(b"bad name", b"v")], "invalid response header name b'bad name'"),
        (200, [(b"x-a", b"a\r\nset-cookie: evil=1")], "invalid value for response header b'x-a'"),
        (200, [(b"x-a", b"a\nb")], "invalid value for response header b'x-a'"),
        (200, [(b"x-a", b"a\x00b")], "invalid value for response header b'x-a'"),
    ],
)
def test_invalid_app_output_is_a_500_and_never_on_the_wire(
    http: str, status: Any, headers: Any, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    # uvicorn CVE-2020-7695: header values were written unchecked (response splitting).
    caplog.set_level(logging.ERROR, logger="appserver")

    async def main() -> tuple[bytes, bool]:
        async with serve(responding(status, headers), http) as (_, port):
            return await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=1.0)

    data, closed = run(main())
    assert data.startswith(SERVER_ERROR_HEAD)
    assert b"evil" not in data and b"bad name" not in data
    assert closed
    assert logged in caplog.text


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_on_204_and_304(http: str, status: int) -> None:
    async def main() -> tuple[bytes, bool]:
        async with serve(responding(status), http) as (_, port):
            return await exchange(
                port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=1.0
            )

    data, _ = run(main())
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status)
    assert body == b""
    assert b"content-length" not in head


def test_no_body_after_head(http: str) -> None:
    async def main() -> tuple[bytes, bool]:
        async with serve(responding(200), http) as (_, port):
            return await exchange(
                port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=1.0
            )

    data, _ = run(main())
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-length: 4" in head  # what a GET would get (RFC 9110 §9.3.2)
    assert body == b""


def test_escape() -> None:
    assert escape("/plain/path") == "/plain/path"
    assert escape('/a"b\\c') == '/a\\"b\\\\c'
    assert escape("/a\r\n127.0.0.1 - forged") == "/a\\x0d\\x0a127.0.0.1 - forged"
    assert escape("/\x1b[31mred") == "/\\x1b[31mred"
    assert escape("/\x9bcsi\x7f") == "/\\x9bcsi\\x7f"
    assert escape("/café") == "/café"


def test_access_log_cannot_be_forged(http: str, caplog: pytest.LogCaptureFixture) -> None:
    # The path is percent-decoded in the scope: %0d%0a and %1b become real control characters,
    # and X-Forwarded-For from a trusted proxy names a "client" of the sender's choosing.
    caplog.set_level(logging.INFO, logger="appserver.access")
    request = (
        b"GET /a%0d%0a127.0.0.1:1%20-%20%22GET%20/admin%20HTTP/1.1%22%20200%1b[2J?q=%22x "
        b'HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: evil" \\o/\r\nConnection: close\r\n\r\n'
    )

    async def main() -> None:
        async with serve(responding(), http, access_log=True) as (_, port):
            data, _ = await exchange(port, request, timeout=1.0)
            assert data.startswith(b"HTTP/1.1 200 ")

    run(main())
    [line] = [r.getMessage() for r in caplog.records if r.name == "appserver.access"]
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line.startswith('evil\\" \\\\o/:0 - ')
    assert '"GET /a\\x0d\\x0a127.0.0.1:1 - \\"GET /admin HTTP/1.1\\" 200\\x1b[2J?q=%22x' in line
