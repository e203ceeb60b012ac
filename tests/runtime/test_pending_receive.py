"""A ``receive()`` that is waiting when a request ends is answered with ``http.disconnect``.

ASGI HTTP: ``http.disconnect`` is "sent to the application if receive is called after a response
has been sent or after the HTTP connection has been closed". Frameworks (Litestar, Starlette's
``listen_for_disconnect``) call ``receive()`` once, early, and await it alongside a streamed
response; if that call is never answered the app's task outlives its response, holds a
``limit_concurrency`` slot, and a graceful drain waits for it forever. Each test here ends a
request one way while such a listener waits, and checks that the listener is answered and the
task is gone, with the connection still open where keep-alive allows.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from tests.conftest import read_until_close, run, serve, tasks_gone

WAIT = 3.0  # bounds a hang; nothing here measures speed


async def listen(receive: Any, heard: list[str]) -> None:
    """Receive until ``http.disconnect``, recording each message's type in ``heard``."""
    while True:
        message = await receive()
        heard.append(message["type"])
        if message["type"] == "http.disconnect":
            return


class Listening:
    """An app that streams a response while a second coroutine waits in ``receive()``.

    ``heard[path]`` is what that coroutine received, in order; it stops at ``http.disconnect``,
    so a path appears in ``done`` only once its listener was answered.
    """

    def __init__(self, *, body: str = "stream", chunks: int = 3) -> None:
        self.body = body
        self.chunks = chunks
        self.heard: dict[str, list[str]] = {}
        self.done: asyncio.Queue[str] = asyncio.Queue()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        path = scope["path"]
        heard = self.heard.setdefault(path, [])

        listener = asyncio.ensure_future(listen(receive, heard))
        await asyncio.sleep(0)  # the listener is waiting before the response starts
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        if self.body == "whole":
            await send({"type": "http.response.body", "body": b"whole"})
        else:
            for i in range(self.chunks):
                await send({"type": "http.response.body", "body": b"%d\n" % i, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        await listener  # returns only once the listener got http.disconnect
        await self.done.put(path)


async def _wait_done(app: Listening, count: int) -> list[str]:
    paths = []
    for _ in range(count):
        paths.append(await asyncio.wait_for(app.done.get(), WAIT))
    return paths


async def _read_response(reader: asyncio.StreamReader, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = await asyncio.wait_for(reader.read(65536), WAIT)
        assert chunk, f"closed early after {data!r}"
        data += chunk
    return data


@contextlib.asynccontextmanager
async def _connection(port: int) -> Any:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@pytest.mark.parametrize("body", ["stream", "whole"])
def test_keep_alive_listener_hears_disconnect_after_response(http: str, body: str) -> None:
    app = Listening(body=body)

    async def main() -> None:
        async with serve(app, http) as (server, port), _connection(port) as (reader, writer):
            writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            end = b"0\r\n\r\n" if body == "stream" else b"whole"
            response = await _read_response(reader, end)
            assert response.startswith(b"HTTP/1.1 200 OK\r\n")
            assert await _wait_done(app, 1) == ["/a"]
            assert app.heard["/a"] == ["http.request", "http.disconnect"]
            await tasks_gone(server)
            # The connection is still good for the next request.
            writer.write(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            await _read_response(reader, end)
            assert await _wait_done(app, 1) == ["/b"]
            assert len(server.server_state.connections) == 1

    run(main())


def test_connection_close_listener_hears_disconnect(http: str) -> None:
    app = Listening()

    async def main() -> None:
        async with serve(app, http) as (server, port), _connection(port) as (reader, writer):
            writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data, closed = await read_until_close(reader, WAIT)
            assert closed and data.endswith(b"0\r\n\r\n")
            assert await _wait_done(app, 1) == ["/a"]
            assert app.heard["/a"] == ["http.request", "http.disconnect"]
            await tasks_gone(server)

    run(main())


def test_pipelined_listener_hears_disconnect_before_next_request(http: str) -> None:
    app = Listening()

    async def main() -> None:
        async with serve(app, http) as (server, port), _connection(port) as (reader, writer):
            writer.write(
                b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            data = await _read_response(reader, b"0\r\n\r\n")
            while data.count(b"0\r\n\r\n") < 2:
                data += await _read_response(reader, b"0\r\n\r\n")
            assert sorted(await _wait_done(app, 2)) == ["/first", "/second"]
            assert app.heard["/first"] == ["http.request", "http.disconnect"]
            assert app.heard["/second"] == ["http.request", "http.disconnect"]
            await tasks_gone(server)

    run(main())


def test_listener_hears_disconnect_when_the_app_fails(http: str) -> None:
    # The 500 is the server's answer; the coroutine still waiting in receive() (a framework's
    # disconnect listener in another task) must learn that the request is over.
    heard: list[str] = []
    holder: list[asyncio.Future[None]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        waiter = asyncio.ensure_future(listen(receive, heard))
        holder.append(waiter)
        await asyncio.sleep(0)
        raise RuntimeError("boom")

    async def main() -> None:
        async with serve(app, http) as (_, port), _connection(port) as (reader, writer):
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data, _ = await read_until_close(reader, WAIT)
            assert data.startswith(b"HTTP/1.1 500 ")
            await asyncio.wait_for(holder[0], WAIT)
            assert heard == ["http.request", "http.disconnect"]

    run(main())


def test_shutdown_drain_does_not_wait_for_a_listener(http: str) -> None:
    # No timeout_graceful_shutdown: the drain must end on its own, with nothing cancelled.
    app = Listening()

    async def main() -> None:
        async with _connection_after_serve(app, http) as (server, reader, writer):
            writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            await _read_response(reader, b"0\r\n\r\n")
            server.should_exit = True
            await asyncio.wait_for(server.shutdown(), WAIT)
            assert not server.server_state.tasks
            assert app.heard["/a"] == ["http.request", "http.disconnect"]

    run(main())


@contextlib.asynccontextmanager
async def _connection_after_serve(app: Any, http: str) -> Any:
    from appserver import Config, Server

    config = Config(app=app, port=0, http=http, log_config=None, lifespan="off")
    config.load()
    server = Server(config)
    await server.startup()
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with _connection(port) as (reader, writer):
            yield server, reader, writer
    finally:
        if server.server_state.tasks or server.server_state.connections:
            server.force_exit = True
            await server.shutdown()


def test_half_close_mid_body_answers_the_waiting_receive(http: str) -> None:
    # The client shuts its sending side with the body unfinished: that body can never arrive,
    # so the app waiting for it gets http.disconnect and the connection closes.
    heard: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await listen(receive, heard)

    async def main() -> None:
        async with serve(app, http) as (server, port), _connection(port) as (reader, writer):
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
            await writer.drain()
            writer.write_eof()
            data, closed = await read_until_close(reader, WAIT)
            assert closed and data == b""
            await tasks_gone(server)
            assert heard[-1] == "http.disconnect"

    run(main())
