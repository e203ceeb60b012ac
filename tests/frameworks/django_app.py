"""A small Django project in one module: a view, a POST echo, a streamed response.

Django speaks no ASGI lifespan (its handler refuses the scope), which ``lifespan = "auto"``
must take in its stride.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only",
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        USE_TZ=True,
    )
    django.setup()

from django.core.asgi import get_asgi_application
from django.http import (
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path
from django.views.decorators.csrf import csrf_exempt


async def index(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"hello": "django", "path": request.path})


@csrf_exempt
async def echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body[::-1], content_type="application/octet-stream")


async def stream(request: HttpRequest) -> StreamingHttpResponse:
    async def numbers() -> AsyncIterator[bytes]:
        for i in range(5):
            await asyncio.sleep(0)
            yield b"%d\n" % i

    return StreamingHttpResponse(numbers(), content_type="text/plain")


urlpatterns = [
    path("", index),
    path("echo", echo),
    path("stream", stream),
]

app = get_asgi_application()
