"""Spec example 4: load(), startup(), main_loop() and shutdown() called by hand."""

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


async def run_server():
    config = Config(
        app=app,
        host="127.0.0.1",
        port=8000,
        timeout_graceful_shutdown=30,  # 30 second graceful shutdown
    )

    # IMPORTANT: Must call load() before creating Server and calling startup()
    config.load()

    server = Server(config)

    # Start server
    await server.startup()

    if server.started:
        try:
            # Run until interrupted
            await server.main_loop()
        finally:
            # Ensure clean shutdown
            await server.shutdown()


asyncio.run(run_server())
