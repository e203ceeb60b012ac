"""A Starlette app with a lifespan and a slow endpoint (forced-exit test)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield


async def slow(request: Request) -> PlainTextResponse:
    print("slow request begun", flush=True)
    await asyncio.sleep(60)
    return PlainTextResponse("late")


app = Starlette(routes=[Route("/slow", slow)], lifespan=lifespan)
