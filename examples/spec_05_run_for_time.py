"""Spec example 5: serve for a fixed time (60 s), then shut down."""

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


async def run_with_timeout():
    config = Config(app=app, host="127.0.0.1", port=8000)
    config.load()  # Required before calling startup()
    server = Server(config)

    # Start server
    await server.startup()

    if server.started:
        # Run server for 60 seconds then shutdown
        try:
            await asyncio.sleep(60)
        finally:
            server.should_exit = True
            await server.shutdown()


asyncio.run(run_with_timeout())
