"""Spec example 8: start-up in stages, with progress printed."""

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


async def run_with_stages():
    config = Config(app=app, host="127.0.0.1", port=8000)

    # Stage 0: Load configuration (required before startup)
    print("Loading configuration...")
    config.load()
    server = Server(config)

    # Stage 1: Startup
    print("Starting server...")
    await server.startup()

    if not server.started:
        print("Server failed to start")
        return

    print(f"Server started on {config.host}:{config.port}")
    print(f"Active connections: {len(server.server_state.connections)}")

    # Stage 2: Run
    try:
        await server.main_loop()
    except KeyboardInterrupt:
        print("\nInterrupted by user")

    # Stage 3: Shutdown
    print("Shutting down server...")
    await server.shutdown()
    print("Server stopped")


asyncio.run(run_with_stages())
