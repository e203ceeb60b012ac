"""End to end: httpx and raw sockets against real servers on 127.0.0.1, on both parsers."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
from typing import Any

import httpx
import pytest

from appserver import Server
from appserver.runtime import http_protocol
from tests.conftest import read_until_close, run, serve


async def read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def respond(send: Any, body: bytes, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def hello_app(scope: Any, receive: Any, send: Any) -> None:
    await respond(send, b"hello")


async def client_port_app(scope: Any, receive: Any, send: Any) -> None:
    await respond(send, str(scope["client"][1]).encode())


def test_keep_alive_reuses_the_connection(http: str) -> None:
    async def main() -> None:
        async with serve(client_port_app, http) as (server, port):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                ports = set()
                for _ in range(5):
                    response = await client.get("/")
                    ports.add(response.text)
                    assert len(server.server_state.connections) == 1
            assert len(ports) == 1
            assert server.server_state.total_requests == 5

    run(main())


def test_keep_alive_timeout_closes_idle_connection(http: str) -> None:
    async def main() -> None:
        async with serve(client_port_app, http, timeout_keep_alive=0.3) as (server, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                loop = asyncio.get_running_loop()
                writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 OK\r\n")
                assert b"connection: close" not in head
                answered = loop.time()
                # Still open a little before the timeout...
                _, closed = await read_until_close(reader, 0.15)
                assert not closed
                # ...and closed by the server soon after it.
                _, closed = await read_until_close(reader, 2.0)
                assert closed
                waited = loop.time() - answered
                assert 0.25 <= waited < 1.5
                assert len(server.server_state.connections) == 0
            finally:
                writer.close()

    run(main())


def test_keep_alive_timeout_spares_a_slow_response_and_counts_from_its_end(http: str) -> None:
    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.5)
        await respond(send, b"late")

    async def main() -> None:
        async with serve(slow_app, http, timeout_keep_alive=0.2, timeout_header_read=0.2) as (
            server,
            port,
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                loop = asyncio.get_running_loop()
                # A second connection that never sends (timeouts.header_read runs from accept):
                # its timeout shares the server's timers.
                idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                _, idle_closed = await read_until_close(idle_reader, 0.4)
                assert idle_closed
                idle_writer.close()
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 OK\r\n")
                assert await reader.readexactly(4) == b"late"
                answered = loop.time()
                _, closed = await read_until_close(reader, 0.1)
                assert not closed
                _, closed = await read_until_close(reader, 2.0)
                assert closed
                assert 0.15 <= loop.time() - answered < 1.0
                assert len(server.server_state.connections) == 0
            finally:
                writer.close()

    run(main())


def test_idle_connections_give_back_their_parser_without_mixing_requests(http: str) -> None:
    """Between requests a connection holds no parser; one that has read the start of its next
    request keeps its own, and every request is answered on its own connection."""

    async def path_app(scope: Any, receive: Any, send: Any) -> None:
        await respond(send, scope["path"].encode())

    async def answer(reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        return await reader.readexactly(2)

    async def main() -> None:
        async with serve(path_app, http) as (server, port):
            idle = server.server_state.idle_parsers
            first_r, first_w = await asyncio.open_connection("127.0.0.1", port)
            second_r, second_w = await asyncio.open_connection("127.0.0.1", port)
            try:
                first_w.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HT")
                assert await answer(first_r) == b"/a"
                assert idle == []  # the first connection is in the middle of /b
                second_w.write(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
                assert await answer(second_r) == b"/c"
                assert len(idle) == 1
                first_w.write(b"TP/1.1\r\nHost: x\r\n\r\n")
                assert await answer(first_r) == b"/b"
                assert len(idle) == 2
                for path in (b"/d", b"/e"):  # parsers that served both, now on the second
                    second_w.write(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
                    assert await answer(second_r) == path
                    assert len(idle) == 2
            finally:
                first_w.close()
                second_w.close()

    run(main())


def test_proxy_connection_close_does_not_spoil_the_next_connection(http: str) -> None:
    """A request with ``Proxy-Connection: close`` (which llhttp honours) must not leave a parser
    that refuses the next client's request."""

    async def main() -> None:
        async with serve(hello_app, http) as (_, port):
            for headers in (b"Proxy-Connection: close\r\n", b""):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                try:
                    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
                finally:
                    writer.close()

    run(main())


def test_idle_parsers_kept_are_capped(http: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_protocol, "MAX_IDLE_PARSERS", 2)

    async def main() -> None:
        async with serve(hello_app, http) as (server, port):
            streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
            try:
                for _, writer in streams:  # four requests at once: four parsers busy
                    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                for reader, _ in streams:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
                assert len(server.server_state.idle_parsers) == 2
            finally:
                for _, writer in streams:
                    writer.close()

    run(main())


def test_slow_reading_app_pauses_the_socket(http: str) -> None:
    """A large upload to an app that reads slowly: the server stops reading, nothing is lost."""
    payload = bytes(range(256)) * (16 * 1024)  # 4 MiB
    seen_paused: list[bool] = []
    servers: list[Server] = []

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        digest = hashlib.sha256()
        size = 0
        while True:
            message = await receive()
            digest.update(message["body"])
            size += len(message["body"])
            if size and not seen_paused:
                await asyncio.sleep(0.3)  # let the client fill the buffers
                seen_paused.append(any(c.read_paused for c in servers[0].server_state.connections))
            if not message["more_body"]:
                break
        await respond(send, f"{size} {digest.hexdigest()}".encode())

    async def main() -> None:
        async with serve(slow_app, http) as (server, port):
            servers.append(server)
            async with httpx.AsyncClient() as client:
                response = await client.post(f"http://127.0.0.1:{port}/", content=payload)
        assert response.text == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}"
        assert seen_paused == [True]

    run(main(), timeout=30)


def test_slow_reading_client_makes_send_wait(http: str) -> None:
    """A large response to a client that does not read: the app's send() waits."""
    chunk = bytes(range(256)) * 1024  # 256 KiB
    count = 64  # 16 MiB in all, far more than the socket buffers hold
    sent = [0]

    async def big_app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(chunk) * count).encode())],
            }
        )
        for i in range(count):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < count - 1})
            sent[0] += 1

    async def main() -> None:
        async with serve(big_app, http) as (_, port):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.connect(("127.0.0.1", port))
            sock.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=sock)
            try:
                writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                await asyncio.sleep(0.5)  # not reading
                assert sent[0] < count // 2
                head = await reader.readuntil(b"\r\n\r\n")
                assert b"content-length: %d\r\n" % (len(chunk) * count) in head
                digest = hashlib.sha256()
                received = 0
                while True:
                    data = await reader.read(1 << 20)
                    if not data:
                        break
                    digest.update(data)
                    received += len(data)
                assert received == len(chunk) * count
                assert digest.digest() == hashlib.sha256(chunk * count).digest()
                assert sent[0] == count
            finally:
                writer.close()

    run(main(), timeout=30)


SCOPE_KEYS = {
    "type",
    "asgi",
    "http_version",
    "method",
    "scheme",
    "path",
    "raw_path",
    "query_string",
    "root_path",
    "headers",
    "client",
    "server",
    "state",
}


class LifespanStateApp:
    """Sets lifespan state at startup; each request reports then mutates its copy."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    scope["state"]["name"] = "original"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        self.scopes.append(dict(scope, state=dict(scope["state"])))
        scope["state"]["name"] = "mutated"
        scope["state"]["added"] = True
        await respond(send, b"")


def test_scope_contents_and_lifespan_state_copied_per_request(http: str) -> None:
    app = LifespanStateApp()

    async def main() -> int:
        async with (
            serve(app, http, lifespan="on", root_path="/root") as (_, port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            # root_path is the prefix a proxy stripped: it is not on the wire, and the
            # scope's path gets it back (ASGI 2.x, uvicorn alike).
            await client.get("/a%20b?x=1", headers={"X-Test": "yes"})
            await client.post("/", content=b"data")
        return port

    port = run(main())
    first, second = app.scopes
    assert set(first) == SCOPE_KEYS
    assert first["type"] == "http"
    assert first["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert first["http_version"] == "1.1"
    assert first["method"] == "GET"
    assert first["scheme"] == "http"
    assert first["root_path"] == "/root"
    assert first["path"] == "/root/a b"
    assert first["raw_path"] == b"/root/a%20b"
    assert first["query_string"] == b"x=1"
    assert first["server"] == ("127.0.0.1", port)
    assert first["client"][0] == "127.0.0.1"
    assert (b"x-test", b"yes") in first["headers"]
    assert all(name == name.lower() for name, _ in first["headers"])
    assert first["state"] == {"name": "original"}
    # The first request's changes stayed in its own copy.
    assert second["state"] == {"name": "original"}
    assert second["method"] == "POST"


@pytest.mark.parametrize("enabled", [True, False])
def test_access_log(http: str, enabled: bool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="appserver.access")

    async def main() -> None:
        async with serve(client_port_app, http, access_log=enabled) as (_, port):
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://127.0.0.1:{port}/p?q=1")
            assert response.status_code == 200

    run(main())
    lines = [r.getMessage() for r in caplog.records if r.name == "appserver.access"]
    if enabled:
        assert len(lines) == 1
        assert lines[0].startswith("127.0.0.1:")
        assert lines[0].endswith(' - "GET /p?q=1 HTTP/1.1" 200')
    else:
        assert lines == []


def test_limit_concurrency_answers_503(http: str) -> None:
    release = asyncio.Event

    async def main() -> None:
        gate = release()
        started = asyncio.Event()

        async def held_app(scope: Any, receive: Any, send: Any) -> None:
            started.set()
            await gate.wait()
            await respond(send, b"done")

        async with (
            serve(held_app, http, limit_concurrency=1) as (_, port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            first = asyncio.ensure_future(client.get("/"))
            await started.wait()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data, closed = await read_until_close(reader, 2.0)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            assert data == (
                b"HTTP/1.1 503 Service Unavailable\r\nserver: appserver\r\n"
                b"content-type: text/plain; charset=utf-8\r\ncontent-length: 19\r\n"
                b"connection: close\r\n\r\nService Unavailable"
            )
            assert closed
            gate.set()
            assert (await first).text == "done"

    run(main())


def test_shutdown_waits_for_the_response_in_flight(http: str) -> None:
    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.3)
        await respond(send, b"late")

    async def main() -> None:
        async with serve(slow, http) as (server, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.sleep(0.05)
            server.should_exit = True
            shutdown = asyncio.ensure_future(server.shutdown())
            data, closed = await read_until_close(reader, 2.0)
            await shutdown
            writer.close()
        # The head says close: the server is going away.
        assert data == (
            b"HTTP/1.1 200 OK\r\nserver: appserver\r\ncontent-length: 4\r\n"
            b"connection: close\r\n\r\nlate"
        )
        assert closed

    run(main())


def test_head_is_sent_while_the_app_waits_before_its_first_body_chunk(http: str) -> None:
    # The head is held back to go out with the first body chunk in one write; an app that
    # sends http.response.start and then waits (an event stream before its first event) must
    # still get its head to the client straight away.
    release = asyncio.Event()

    async def slow_stream(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await release.wait()
        await send({"type": "http.response.body", "body": b"event", "more_body": False})

    async def main() -> None:
        async with serve(slow_stream, http) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2.0)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"transfer-encoding: chunked\r\n" in head
            release.set()
            body = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 2.0)
            assert body == b"5\r\nevent\r\n0\r\n\r\n"
            writer.close()

    run(main())
