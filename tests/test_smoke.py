"""A first end-to-end check: a real server on 127.0.0.1 answers a real client on both parsers."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from appserver import Config, Server


async def hello(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_hello(http: str) -> None:
    async def main() -> None:
        config = Config(app=hello, port=0, http=http, log_config=None, lifespan="off")
        config.load()
        server = Server(config)
        await server.startup()
        assert server.started
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://127.0.0.1:{port}/")
            assert response.status_code == 200
            assert response.text == "Hello, world!"
            assert response.headers["content-length"] == "13"
        finally:
            server.should_exit = True
            await server.shutdown()

    asyncio.run(asyncio.wait_for(main(), 10))
