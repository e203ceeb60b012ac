"""Django served by a real server on both parsers: a view, a POST body, a streamed response,
and ``lifespan = "auto"`` with an app that does not speak lifespan."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.conftest import run, serve, tasks_gone
from tests.frameworks.django_app import app


def test_django(http: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="appserver")

    async def main() -> None:
        async with (
            serve(app, http, lifespan="auto") as (server, port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            response = await client.get("/")
            assert response.json() == {"hello": "django", "path": "/"}
            response = await client.post("/echo", content=b"xyz" * 1000)
            assert response.content == b"zyx" * 1000
            response = await client.get("/stream")
            assert response.text == "0\n1\n2\n3\n4\n"
            assert response.headers["transfer-encoding"] == "chunked"
            response = await client.get("/missing")
            assert response.status_code == 404
            assert len(server.server_state.connections) == 1
            await tasks_gone(server)

    run(main())
    assert "ASGI 'lifespan' protocol appears unsupported." in caplog.text
