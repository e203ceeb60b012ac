"""Spec example 6: watch server_state while serving."""

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


async def monitor_server():
    config = Config(app=app, host="127.0.0.1", port=8000)
    config.load()  # Required before calling startup()
    server = Server(config)

    await server.startup()

    if server.started:
        # Monitor connections and requests
        async def stats_reporter():
            while not server.should_exit:
                state = server.server_state
                print(f"Active connections: {len(state.connections)}")
                print(f"Total requests: {state.total_requests}")
                print(f"Background tasks: {len(state.tasks)}")
                await asyncio.sleep(5)

        # Run stats reporter alongside server
        stats_task = asyncio.create_task(stats_reporter())

        try:
            await server.main_loop()
        finally:
            stats_task.cancel()
            await server.shutdown()


asyncio.run(monitor_server())
