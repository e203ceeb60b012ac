"""The opening handshake: scope, subprotocols, headers, denial, and upgrades we do not take."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.utils import accept_key

from tests.websocket.helpers import (
    TEXT,
    RawClient,
    echo_app,
    frame,
    handshake_request,
    run,
    serve,
)


def test_scope_subprotocol_and_headers(http: str) -> None:
    scopes: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(scope)
        assert (await receive())["type"] == "websocket.connect"
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": "chat.v2",
                "headers": [(b"x-greeting", b"hello"), (b"set-cookie", b"a=1")],
            }
        )
        message = await receive()
        await send({"type": "websocket.send", "text": message["text"]})
        await receive()

    async def main() -> None:
        async with serve(app, http) as (_, port):
            uri = f"ws://127.0.0.1:{port}/chat/room?x=1"
            async with connect(uri, subprotocols=["chat.v1", "chat.v2"]) as ws:
                assert ws.subprotocol == "chat.v2"
                headers = ws.response.headers
                assert headers["x-greeting"] == "hello"
                assert headers["set-cookie"] == "a=1"
                assert headers["server"] == "appserver"
                await ws.send("hi")
                assert await ws.recv() == "hi"

    run(main())
    (scope,) = scopes
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/chat/room"
    assert scope["raw_path"] == b"/chat/room"
    assert scope["query_string"] == b"x=1"
    assert scope["subprotocols"] == ["chat.v1", "chat.v2"]
    assert scope["http_version"] == "1.1"
    assert scope["asgi"]["version"] == "3.0"
    assert "websocket.http.response" in scope["extensions"]
    assert "method" not in scope
    assert scope["client"][0] == "127.0.0.1"
    assert (b"upgrade", b"websocket") in scope["headers"]


def test_no_subprotocol(http: str) -> None:
    async def main() -> None:
        async with serve(echo_app, http) as (_, port), connect(f"ws://127.0.0.1:{port}/") as ws:
            assert ws.subprotocol is None
            assert "sec-websocket-protocol" not in ws.response.headers

    run(main())


def test_raw_handshake_response_and_trailing_frame(http: str) -> None:
    """A frame in the same packet as the request reaches the app (bytes after the switch)."""

    async def main() -> None:
        async with serve(echo_app, http, date_header=False) as (_, port):
            client = await RawClient.connect(port)
            request, key = handshake_request(extra=b"Sec-WebSocket-Protocol: one, two\r\n")
            client.send(request + frame(TEXT, b"early"))
            head = await client.read_head()
            assert head == (
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + accept_key(key.decode()).encode()
                + b"\r\nSec-WebSocket-Protocol: one\r\nserver: appserver\r\n\r\n"
            )
            assert await client.recv_frame() == (True, TEXT, b"early")
            client.close()

    run(main())


def test_invalid_handshake_is_rejected_without_the_app(http: str) -> None:
    called = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(scope)

    async def main() -> None:
        async with serve(app, http) as (_, port):
            client = await RawClient.connect(port)
            client.send(
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            head = await client.read_head()
            assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
            body = await client.reader.read()  # the body, then the connection closes
            assert body.startswith(b"Failed to open a WebSocket connection")
            client.close()

    run(main())
    assert called == []


def test_close_before_accept_is_403(http: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close"})

    async def main() -> bytes:
        async with serve(app, http, date_header=False) as (_, port):
            client = await RawClient.connect(port)
            client.send(handshake_request()[0])
            data = await client.reader.read()
            client.close()
            return data

    async def check() -> None:
        data = await main()
        assert data == (
            b"HTTP/1.1 403 Forbidden\r\nserver: appserver\r\n"
            b"content-type: text/plain; charset=utf-8\r\ncontent-length: 9\r\n"
            b"connection: close\r\n\r\nForbidden"
        )

    run(check())


@pytest.mark.parametrize("when", ["raise", "return"])
def test_app_error_before_accept_is_500(http: str, when: str, caplog: Any) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if when == "raise":
            raise RuntimeError("boom")

    async def main() -> None:
        async with serve(app, http) as (_, port):
            with pytest.raises(InvalidStatus) as info:
                async with connect(f"ws://127.0.0.1:{port}/"):
                    pass
            assert info.value.response.status_code == 500
            assert info.value.response.body == b"Internal Server Error"

    run(main())
    assert any(r.levelname == "ERROR" for r in caplog.records)


def test_denial_response(http: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert "websocket.http.response" in scope["extensions"]
        await receive()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Basic")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"log ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"in first"})

    async def main() -> None:
        async with serve(app, http) as (_, port):
            with pytest.raises(InvalidStatus) as info:
                async with connect(f"ws://127.0.0.1:{port}/"):
                    pass
            response = info.value.response
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Basic"
            assert response.body == b"log in first"

            # The same bytes on a raw socket: chunked (the length was unknown), then EOF.
            client = await RawClient.connect(port)
            client.send(handshake_request()[0])
            data = await client.reader.read()
            assert data.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
            assert b"connection: close\r\n" in data
            assert data.endswith(b"\r\n\r\n4\r\nlog \r\n8\r\nin first\r\n0\r\n\r\n")
            client.close()

    run(main())


@pytest.mark.parametrize("ws", ["none", "auto"])
def test_upgrade_served_as_http_when_not_taken(http: str, ws: str) -> None:
    """ws = "none" serves a WebSocket upgrade as HTTP; h2c is never taken."""
    scopes: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(scope["type"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain"})

    async def main() -> None:
        async with serve(app, http, ws=ws) as (_, port):
            upgrade = "websocket" if ws == "none" else "h2c"
            async with httpx.AsyncClient() as client:
                response = await client.get(
                    f"http://127.0.0.1:{port}/",
                    headers={
                        "upgrade": upgrade,
                        "connection": "upgrade",
                        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
                        "sec-websocket-version": "13",
                    },
                )
            assert response.status_code == 200
            assert response.text == "plain"

    run(main())
    assert scopes == ["http"]


def test_ws_none_keeps_connection_for_http(http: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main() -> None:
        async with serve(app, http, ws="none") as (_, port):
            client = await RawClient.connect(port)
            request = handshake_request()[0]
            client.send(request + request)
            for _ in range(2):
                head = await client.read_head()
                assert head.startswith(b"HTTP/1.1 200 OK\r\n")
                assert await client.reader.readexactly(2) == b"ok"
            client.close()
            await asyncio.sleep(0)

    run(main())
