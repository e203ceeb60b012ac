"""The ASGI websocket protocol over websockets' sans-IO ``ServerProtocol``; no I/O here."""
