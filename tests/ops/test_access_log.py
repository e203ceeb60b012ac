"""Access lines: json (always valid), templates, request ids, WebSocket open/close lines."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
import websockets

from appserver import Config
from appserver.errors import ConfigError
from tests.conftest import exchange, run, serve
from tests.ops.apps import hello


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "appserver.access"]


def test_json_lines_are_valid_whatever_the_client_sends(
    http: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="appserver.access")
    # %0d%0a, %22 and %1b decode to CR LF, a quote and ESC in the scope's path.
    request = (
        b"GET /a%0d%0a%22b%1b[2J?q=%22x HTTP/1.1\r\nHost: x\r\n"
        b'User-Agent: evil"\\agent\r\nReferer: /from\r\nConnection: close\r\n\r\n'
    )

    async def main() -> None:
        async with serve(hello, http, access_log=True, access_log_format="json") as (_, port):
            data, _ = await exchange(port, request)
            assert data.startswith(b"HTTP/1.1 200 ")

    run(main())
    [line] = access_lines(caplog)
    assert "\n" not in line and "\x1b" not in line
    record = json.loads(line)
    assert record["path"] == '/a\r\n"b\x1b[2J' and record["query"] == "q=%22x"
    assert record["user_agent"] == 'evil"\\agent' and record["referer"] == "/from"
    assert (record["method"], record["status"], record["http_version"]) == ("GET", 200, "1.1")
    assert record["client"].startswith("127.0.0.1:") and record["request_id"] is None
    assert record["bytes"] > len(b"app /a") and record["duration_ms"] >= 0
    assert record["time"].endswith("+00:00")
    assert set(record) == {
        "time", "client", "method", "path", "query", "status", "bytes", "duration_ms",
        "http_version", "request_id", "user_agent", "referer",
    }  # fmt: skip


def test_a_template_names_fields_and_escapes_them(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="appserver.access")
    request = b'GET /p%0a%22 HTTP/1.1\r\nHost: x\r\nUser-Agent: ua"1\r\nConnection: close\r\n\r\n'

    async def main() -> None:
        fmt = "{method} {path} {status} ua={user_agent} ref={referer}"
        async with serve(hello, "httptools", access_log=True, access_log_format=fmt) as (_, port):
            await exchange(port, request)

    run(main())
    assert access_lines(caplog) == ['GET /p\\x0a\\" 200 ua=ua\\"1 ref=-']


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("{nope}", "unknown field {nope}"), ("plain", "naming at least one {field}"),
     ("{status", "expected a template")],
)  # fmt: skip
def test_bad_templates_are_refused(fmt: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("{", r"\{").replace("}", r"\}")):
        Config(app=hello, access_log_format=fmt)


def test_request_id_is_taken_when_well_formed_else_generated_and_echoed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="appserver.access")

    async def main() -> list[str | None]:
        async with (
            serve(
                hello,
                "h11",
                access_log=True,
                access_log_format="{request_id}",
                request_id_header="X-Request-ID",
                request_id_echo=True,
            ) as (_, port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            given = await client.get("/", headers={"x-request-id": "abc-123.x/y"})
            forged = await client.get("/", headers={"x-request-id": "a b\tc"})
            none = await client.get("/")
            return [r.headers.get("x-request-id") for r in (given, forged, none)]

    echoed = run(main())
    assert echoed[0] == "abc-123.x/y"
    assert echoed[1] is not None and len(echoed[1]) == 32 and echoed[1] != echoed[2]
    assert echoed[2] is not None and len(echoed[2]) == 32
    assert access_lines(caplog) == echoed


def test_request_id_is_not_echoed_unless_asked() -> None:
    async def main() -> httpx.Response:
        async with (
            serve(hello, "h11", request_id_header="x-request-id") as (_, port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            return await client.get("/", headers={"x-request-id": "abc"})

    assert "x-request-id" not in run(main()).headers


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_websocket_sessions_get_an_open_and_a_close_line(
    fmt: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="appserver.access")

    async def main() -> None:
        async with serve(hello, "httptools", access_log=True, access_log_format=fmt) as (_, port):
            async with websockets.connect(f"ws://127.0.0.1:{port}/chat") as ws:
                await ws.send("x")
                await ws.recv()
            for _ in range(100):  # the close line comes when the server sees the TCP close
                if len(access_lines(caplog)) == 2:
                    break
                await __import__("asyncio").sleep(0.02)

    run(main())
    opened, closed = access_lines(caplog)
    if fmt == "json":
        first, second = json.loads(opened), json.loads(closed)
        assert (first["event"], first["path"]) == ("websocket.open", "/chat")
        assert (second["event"], second["code"]) == ("websocket.close", 1000)
        assert second["duration_ms"] >= 0
    else:
        assert opened.endswith('"WebSocket /chat" open')
        assert '"WebSocket /chat" closed 1000 after ' in closed and closed.endswith(" ms")


@pytest.mark.parametrize("fmt", ["{status:d}", "{duration_ms:.1f}", "{path!r}"])
def test_templates_with_format_specs_are_refused(fmt: str) -> None:
    # Every value is written as escaped text: a spec would fail on every response.
    with pytest.raises(ConfigError, match="expected plain"):
        Config(app=hello, access_log_format=fmt)


def answered_with_a_json_line(app: Any, http: str) -> bytes:
    """Everything a client reads for one request to ``app`` (json access log on)."""

    async def main() -> bytes:
        async with serve(app, http, access_log=True, access_log_format="json") as (_, port):
            data, _ = await exchange(
                port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            return data

    return run(main())


@pytest.mark.parametrize("streamed", [False, True])
def test_bytes_counts_a_big_body_written_as_pieces(
    http: str, streamed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # From appserver.http.cycle.VECTOR_LIMIT on, a body leaves beside its head, not copied into
    # one buffer with it (a vectored write): the count must still be every byte sent.
    caplog.set_level(logging.INFO, logger="appserver.access")
    size = 64 * 1024

    async def big(scope: dict[str, object], receive: object, send: Any) -> None:
        headers = [(b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if streamed:
            await send({"type": "http.response.body", "body": b"a" * 10, "more_body": True})
            await send({"type": "http.response.body", "body": b"b" * (size - 10)})
        else:
            await send({"type": "http.response.body", "body": b"b" * size})

    data = answered_with_a_json_line(big, http)
    head, _, received = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert received == (b"a" * 10 + b"b" * (size - 10) if streamed else b"b" * size)
    [line] = access_lines(caplog)
    assert json.loads(line)["bytes"] == len(data)


def test_bytes_counts_a_head_sent_before_its_body(
    http: str, caplog: pytest.LogCaptureFixture
) -> None:
    # An app that waits between http.response.start and its body: the head, held back for one
    # loop iteration, leaves on its own at the end of it, and counts all the same.
    import asyncio

    caplog.set_level(logging.INFO, logger="appserver.access")

    async def slow(scope: dict[str, object], receive: object, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"late body"})

    data = answered_with_a_json_line(slow, http)
    assert data.startswith(b"HTTP/1.1 200 ") and b"late body" in data
    [line] = access_lines(caplog)
    assert json.loads(line)["bytes"] == len(data)
