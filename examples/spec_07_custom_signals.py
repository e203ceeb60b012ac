"""Spec example 7: the program's own signal handlers drive the shutdown."""

import asyncio
import signal

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


async def run_with_custom_signals():
    config = Config(app=app, host="127.0.0.1", port=8000)
    config.load()  # Required before calling startup()
    server = Server(config)

    # Custom shutdown handler
    def shutdown_handler(signum, frame):
        print(f"Received signal {signum}, shutting down...")
        server.should_exit = True

    # Set up custom signal handlers
    signal.signal(signal.SIGINT, shutdown_handler)
    signal.signal(signal.SIGTERM, shutdown_handler)

    await server.startup()

    if server.started:
        try:
            await server.main_loop()
        finally:
            await server.shutdown()


asyncio.run(run_with_custom_signals())
