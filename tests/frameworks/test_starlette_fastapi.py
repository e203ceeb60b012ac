"""Starlette and FastAPI apps served by a real server, lifespan included, on both parsers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from tests.conftest import run, serve

EVENTS: list[str] = []


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
    EVENTS.append("startup")
    yield {"greeting": "hello"}
    EVENTS.append("shutdown")


async def home(request: Request) -> JSONResponse:
    return JSONResponse({"greeting": request.state.greeting, "path": request.url.path})


async def echo(request: Request) -> PlainTextResponse:
    return PlainTextResponse((await request.body())[::-1])


async def stream(request: Request) -> StreamingResponse:
    async def numbers() -> AsyncIterator[bytes]:
        for i in range(5):
            yield b"%d\n" % i

    return StreamingResponse(numbers(), media_type="text/plain")


async def boom(request: Request) -> PlainTextResponse:
    raise RuntimeError("endpoint failure")


def failing_task() -> None:
    raise RuntimeError("background task failure")


async def background(request: Request) -> PlainTextResponse:
    return PlainTextResponse("sent", background=BackgroundTask(failing_task))


starlette_app = Starlette(
    routes=[
        Route("/", home),
        Route("/echo", echo, methods=["POST"]),
        Route("/stream", stream),
        Route("/boom", boom),
        Route("/background", background),
    ],
    lifespan=lifespan,
)


def test_starlette(http: str) -> None:
    EVENTS.clear()

    async def main() -> None:
        async with (
            serve(starlette_app, http, lifespan="on") as (server, port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            response = await client.get("/")
            assert response.json() == {"greeting": "hello", "path": "/"}
            response = await client.post("/echo", content=b"abc" * 10_000 + b"!")
            assert response.content == b"!" + b"cba" * 10_000
            response = await client.get("/stream")
            assert response.headers["transfer-encoding"] == "chunked"
            assert response.text == "0\n1\n2\n3\n4\n"
            response = await client.get("/missing")
            assert response.status_code == 404
            # Starlette sends its 500, then re-raises: the response is whole, so the pooled
            # connection stays usable and the next request on it must work (no reset).
            response = await client.get("/boom")
            assert response.status_code == 500
            response = await client.get("/")
            assert response.status_code == 200
            # A background task raising after the response: likewise.
            response = await client.get("/background")
            assert response.text == "sent"
            response = await client.get("/")
            assert response.status_code == 200
            assert len(server.server_state.connections) == 1
            assert EVENTS == ["startup"]  # shutdown runs when the server stops

    run(main())
    assert EVENTS == ["startup", "shutdown"]


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


fastapi_app = FastAPI()


@fastapi_app.post("/items/{item_id}")
async def create_item(item_id: int, item: Item) -> dict[str, Any]:
    return {"item_id": item_id, "item": item.model_dump()}


@fastapi_app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None) -> dict[str, Any]:
    return {"item_id": item_id, "q": q}


def test_fastapi(http: str) -> None:
    async def main() -> None:
        async with (
            serve(fastapi_app, http, lifespan="auto") as (_, port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            response = await client.post(
                "/items/42", json={"name": "widget", "price": 9.5, "tags": ["a"]}
            )
            assert response.status_code == 200
            assert response.json() == {
                "item_id": 42,
                "item": {"name": "widget", "price": 9.5, "tags": ["a"]},
            }
            response = await client.get("/items/7", params={"q": "x y"})
            assert response.json() == {"item_id": 7, "q": "x y"}
            response = await client.post("/items/notanint", json={"name": "w", "price": 1})
            assert response.status_code == 422
            response = await client.post("/items/1", json={"name": "w"})
            assert response.status_code == 422
            response = await client.get("/openapi.json")
            assert response.json()["paths"]["/items/{item_id}"]

    run(main())
