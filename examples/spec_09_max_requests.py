"""Spec example 9 (second half): exit after a number of requests, for a supervisor to restart."""

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


# Restart after processing 10000 requests
config = Config(
    app=app,
    host="0.0.0.0",
    port=8000,
    limit_max_requests=10000,
)
server = Server(config)
server.run()
