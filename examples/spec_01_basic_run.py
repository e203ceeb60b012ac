"""Spec example 1: basic run (server-api.txt; `uvicorn` read as `appserver`)."""

from appserver import Config, Server


# Define ASGI application
async def app(scope, receive, send):
    assert scope["type"] == "http"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [[b"content-type", b"text/plain"]],
        }
    )
    await send(
        {
            "type": "http.response.body",
            "body": b"Hello, World!",
        }
    )


# Create configuration
config = Config(app=app, host="127.0.0.1", port=8000)

# Create and run server
server = Server(config)
server.run()
