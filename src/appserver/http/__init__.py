"""HTTP/1.1, sans-IO: bytes in, events out; ASGI messages in, bytes out. No asyncio here."""
