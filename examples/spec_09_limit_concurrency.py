"""Spec example 9 (first half): limit concurrency and the listen backlog.

The spec's ninth example shows two configurations, each ending in `server.run()`; this file is
the first, spec_09_max_requests.py the second.
"""

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


# Limit concurrent connections
config = Config(
    app=app,
    host="0.0.0.0",
    port=8000,
    limit_concurrency=100,  # Max 100 concurrent connections
    backlog=2048,  # Socket backlog
)
server = Server(config)
server.run()
