"""Litestar served by a real server on both parsers: streaming, SSE, files, WebSocket, lifespan.

Litestar's streamed responses await ``receive()`` beside the stream and end only on
``http.disconnect``; each response must leave no task behind on a keep-alive connection, and
a SIGTERM afterwards must drain and run the lifespan shutdown at once.
"""

from __future__ import annotations

import signal

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.conftest import run, serve, tasks_gone
from tests.frameworks.litestar_app import FILE, app
from tests.lifecycle.procs import free_port, running, wait_until_serving

pytestmark = pytest.mark.timeout(60)

NUMBERS = "0\n1\n2\n3\n4\n"


def test_litestar_streaming_responses_leave_no_task(http: str) -> None:
    async def main() -> None:
        async with (
            serve(app, http, lifespan="on") as (server, port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            response = await client.get("/")
            assert response.json() == {"hello": "litestar"}
            response = await client.post("/echo", content=b"abc")
            assert response.content == b"cba"

            response = await client.get("/stream")
            assert response.text == NUMBERS
            assert response.headers["transfer-encoding"] == "chunked"
            await tasks_gone(server)

            response = await client.get("/sse")
            assert response.headers["content-type"].startswith("text/event-stream")
            assert [line for line in response.text.splitlines() if line] == [
                f"data: {i}" for i in range(5)
            ]
            await tasks_gone(server)

            response = await client.get("/file")
            assert response.content == FILE.read_bytes()
            await tasks_gone(server)

            response = await client.head("/file")
            assert response.status_code == 200
            assert response.content == b""
            await tasks_gone(server)

            # All of it on one pooled connection.
            assert len(server.server_state.connections) == 1

    run(main())


def test_litestar_websocket(http: str) -> None:
    async def main() -> None:
        async with (
            serve(app, http, lifespan="on") as (_, port),
            connect(f"ws://127.0.0.1:{port}/ws") as ws,
        ):
            await ws.send("hello")
            assert await ws.recv() == "HELLO"

    run(main())


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_litestar_sigterm_after_streaming_exits_at_once(http: str) -> None:
    port = free_port()
    code = f"import appserver; appserver.run('tests.frameworks.litestar_app:app', port={port}, http={http!r})"
    with running(["-c", code]) as proc:
        wait_until_serving(proc, port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            assert client.get("/stream").text == NUMBERS
            assert client.get("/sse").status_code == 200
            assert client.get("/file").content == FILE.read_bytes()
            assert client.head("/file").status_code == 200
            proc.signal(signal.SIGTERM)
            # No timeout_graceful_shutdown: the drain ends because nothing is left to wait for.
            result = proc.wait(timeout=10)
    assert result.returncode == 0, result.output
    assert "litestar shutdown" in result.output
    assert "Application shutdown complete." in result.output
    assert "Forced exit" not in result.output
    assert "Cancel" not in result.output
