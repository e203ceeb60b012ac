"""A small Litestar app: streamed, SSE and file responses, a WebSocket, lifespan hooks.

Served in-process by ``test_litestar.py`` and as ``tests.frameworks.litestar_app:app`` by its
subprocess test; the hooks print so that test can see the lifespan shutdown run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from litestar import Litestar, Request, get, head, post, websocket_listener
from litestar.response import File, ServerSentEvent, Stream

FILE = Path(__file__)  # any file on disk will do; this one is always there


def on_startup() -> None:
    print("litestar startup", flush=True)


def on_shutdown() -> None:
    print("litestar shutdown", flush=True)


@get("/")
async def index() -> dict[str, str]:
    return {"hello": "litestar"}


@post("/echo")
async def echo(request: Request) -> bytes:  # type: ignore[type-arg]
    return (await request.body())[::-1]


async def _numbers(end: str = "\n") -> AsyncIterator[str]:
    for i in range(5):
        await asyncio.sleep(0)
        yield f"{i}{end}"


@get("/stream")
async def stream() -> Stream:
    return Stream(_numbers())


@get("/sse")
async def sse() -> ServerSentEvent:
    return ServerSentEvent(_numbers(end=""))


@get("/file", name="file")
async def file() -> File:
    return File(FILE, filename="litestar_app.py")


@head("/file", name="file-head")
async def file_head() -> File:
    return File(FILE, filename="litestar_app.py")


@websocket_listener("/ws")
async def ws_echo(data: str) -> str:
    return data.upper()


app = Litestar(
    route_handlers=[index, echo, stream, sse, file, file_head, ws_echo],
    on_startup=[on_startup],
    on_shutdown=[on_shutdown],
)
