"""Spec example 2: serve() inside a running event loop."""

import asyncio

from appserver import Config, Server


async def app(scope, receive, send):
    # Your ASGI application
    # (The spec leaves this body as `...`: an app that never answers would hang every client,
    # so a minimal hello-world stands in for it.)
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [[b"content-type", b"text/plain"]],
        }
    )
    await send({"type": "http.response.body", "body": b"Hello, World!"})


async def main():
    config = Config(app=app, host="127.0.0.1", port=8000)
    server = Server(config)

    # Run server within existing event loop
    await server.serve()


# Run with asyncio
asyncio.run(main())
