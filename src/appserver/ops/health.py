"""Liveness and readiness, answered by the server before the app sees the request.

Liveness (``health.path``) is 200 while the process serves at all. Readiness
(``health.readiness_path``) is 200 only between the end of lifespan startup and the start of a
drain, so a load balancer or Kubernetes stops sending before connections close: the readiness
probe of Kubernetes and the health checks of AWS target groups and nginx plus expect this split.
None of uvicorn, hypercorn or gunicorn serves these; apps wrote them, and an app's own endpoint
cannot know that the server has begun to drain.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

App = Callable[[Any, Any, Any], Awaitable[None]]


class Readiness(enum.Enum):
    """Whether the server wants new traffic."""

    STARTING = "starting"  # lifespan startup has not completed
    READY = "ready"
    DRAINING = "draining"  # a shutdown began (signal, worker being rolled): send elsewhere


class ServerView(Protocol):
    readiness: Readiness


_TEXT = (b"content-type", b"text/plain; charset=utf-8")
# A probe's answer is about this instant: no cache on the way may keep it.
_NO_STORE = (b"cache-control", b"no-store")


async def _answer(send: Any, status: int, body: bytes, content_type: bytes | None = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type) if content_type else _TEXT, _NO_STORE],
        }
    )
    await send({"type": "http.response.body", "body": body})


def liveness_app() -> App:
    async def live(scope: Any, receive: Any, send: Any) -> None:
        await _answer(send, 200, b"ok\n")

    return live


def readiness_app(server: ServerView) -> App:
    async def ready(scope: Any, receive: Any, send: Any) -> None:
        readiness = server.readiness
        if readiness is Readiness.READY:
            await _answer(send, 200, b"ready\n")
        else:
            await _answer(send, 503, readiness.value.encode() + b"\n")

    return ready


def rendered_app(render: Callable[[], tuple[bytes, bytes]]) -> App:
    """An endpoint whose body and content type ``render()`` makes per request (metrics)."""

    async def rendered(scope: Any, receive: Any, send: Any) -> None:
        body, content_type = render()
        await _answer(send, 200, body, content_type)

    return rendered


async def not_found(scope: Any, receive: Any, send: Any) -> None:
    """What an operations-only listener answers for any other path: it never serves the app."""
    await _answer(send, 404, b"not found\n")
