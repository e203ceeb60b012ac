"""Messages and closes: echo, fragments, large messages, compression, limits, close codes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK

from tests.websocket.helpers import (
    BINARY,
    CLOSE,
    CONT,
    TEXT,
    RawClient,
    accept_then_record,
    close_payload,
    echo_app,
    frame,
    run,
    serve,
)


@pytest.mark.parametrize("deflate", [True, False], ids=["deflate", "plain"])
def test_echo_text_binary_and_1mib(http: str, deflate: bool) -> None:
    async def main() -> None:
        async with (
            serve(echo_app, http, ws_per_message_deflate=deflate) as (_, port),
            connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws,
        ):
            extensions = ws.response.headers.get("sec-websocket-extensions")
            if deflate:
                assert extensions is not None and "permessage-deflate" in extensions
            else:
                assert extensions is None
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\xff")
            assert await ws.recv() == b"\x00\xff"
            big = bytes(range(256)) * 4096  # 1 MiB
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send("x" * (1 << 20))
            assert await ws.recv() == "x" * (1 << 20)

    run(main())


def test_client_without_compression(http: str) -> None:
    async def main() -> None:
        async with (
            serve(echo_app, http) as (_, port),
            connect(f"ws://127.0.0.1:{port}/", compression=None) as ws,
        ):
            assert "sec-websocket-extensions" not in ws.response.headers
            await ws.send("plain")
            assert await ws.recv() == "plain"

    run(main())


def test_fragmented_messages_raw(http: str) -> None:
    async def main() -> None:
        async with serve(echo_app, http) as (_, port):
            client = await RawClient.connect(port)
            await client.handshake()
            client.send(frame(TEXT, b"hel", fin=False) + frame(CONT, b"lo ", fin=False))
            await asyncio.sleep(0.05)  # the rest in another packet
            client.send(frame(CONT, "wörld".encode()))
            assert await client.recv_frame() == (True, TEXT, "hello wörld".encode())
            # A UTF-8 sequence split across fragments is fine; only the whole must be valid.
            snowman = "☃".encode()
            client.send(frame(TEXT, snowman[:1], fin=False) + frame(CONT, snowman[1:]))
            assert await client.recv_frame() == (True, TEXT, snowman)
            client.send(frame(BINARY, b"\x01", fin=False) + frame(CONT, b"\x02"))
            assert await client.recv_frame() == (True, BINARY, b"\x01\x02")
            client.send(frame(CLOSE, close_payload(1000)))
            assert await client.recv_frame() == (True, CLOSE, close_payload(1000))
            assert await client.at_eof()
            client.close()

    run(main())


def test_invalid_utf8_closes_1007(http: str) -> None:
    async def main() -> None:
        async with serve(echo_app, http) as (_, port):
            client = await RawClient.connect(port)
            await client.handshake()
            client.send(frame(TEXT, b"\xff\xfe"))
            _, opcode, payload = await client.recv_frame()
            assert (opcode, payload[:2]) == (CLOSE, b"\x03\xef")  # 1007
            assert await client.at_eof()
            client.close()

    run(main())


def test_max_size_closes_1009(http: str) -> None:
    disconnects: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                disconnects.append(message)
                return

    async def main() -> None:
        async with serve(app, http, ws_max_size=1000) as (_, port):
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send(b"x" * 1000)  # exactly the limit: fine
                await ws.send(b"x" * 1001)
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.rcvd is not None
                assert info.value.rcvd.code == 1009
            # Over the limit in fragments, each one small.
            client = await RawClient.connect(port)
            await client.handshake()
            client.send(frame(BINARY, b"x" * 600, fin=False) + frame(CONT, b"x" * 600))
            _, opcode, payload = await client.recv_frame()
            assert (opcode, payload[:2]) == (CLOSE, b"\x03\xf1")
            client.close()
            for _ in range(50):
                if len(disconnects) == 2:
                    break
                await asyncio.sleep(0.01)

    run(main())
    assert [d["code"] for d in disconnects] == [1009, 1009]


@pytest.mark.parametrize(
    ("payload", "code", "reason"),
    [(close_payload(1000), 1000, ""), (close_payload(4001, b"bye"), 4001, "bye"), (b"", 1005, "")],
)
def test_client_close_codes(http: str, payload: bytes, code: int, reason: str) -> None:
    disconnects: list[dict[str, Any]] = []

    app = accept_then_record(disconnects)

    async def main() -> None:
        async with serve(app, http) as (_, port):
            client = await RawClient.connect(port)
            await client.handshake()
            client.send(frame(CLOSE, payload))
            assert await client.recv_frame() == (True, CLOSE, payload)  # echoed
            assert await client.at_eof()
            client.close()
            await asyncio.sleep(0.05)

    run(main())
    assert disconnects == [{"type": "websocket.disconnect", "code": code, "reason": reason}]


def test_client_vanishes_1006(http: str) -> None:
    disconnects: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        disconnects.append(await receive())
        with pytest.raises(OSError):
            await send({"type": "websocket.send", "text": "too late"})

    async def main() -> None:
        async with serve(app, http) as (_, port):
            client = await RawClient.connect(port)
            await client.handshake()
            client.close()
            for _ in range(50):
                if disconnects:
                    break
                await asyncio.sleep(0.01)

    run(main())
    assert disconnects == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (4000, "custom"), (None, None)])
def test_server_close_codes(http: str, code: int | None, reason: str | None) -> None:
    disconnects: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        message: dict[str, Any] = {"type": "websocket.close"}
        if code is not None:
            message["code"] = code
        if reason is not None:
            message["reason"] = reason
        await send(message)
        disconnects.append(await receive())

    async def main() -> None:
        async with serve(app, http) as (_, port), connect(f"ws://127.0.0.1:{port}/") as ws:
            with pytest.raises(ConnectionClosedOK if code in (1000, None) else Exception) as info:
                await ws.recv()
            assert ws.close_code == (code or 1000)
            assert ws.close_reason == (reason or "")
            del info

    run(main())
    assert [d["code"] for d in disconnects] == [code or 1000]


def test_app_returns_after_accept_closes_1000_and_error_closes_1011(http: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        if scope["path"] == "/error":
            raise RuntimeError("boom")

    async def main() -> None:
        async with serve(app, http) as (_, port):
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                await ws.wait_closed()
                assert ws.close_code == 1000
            async with connect(f"ws://127.0.0.1:{port}/error") as ws:
                await ws.wait_closed()
                assert ws.close_code == 1011

    run(main())


def test_app_protocol_errors(http: str) -> None:
    errors: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        try:
            await send({"type": "websocket.send", "text": "before accept"})
        except Exception as exc:
            errors.append(exc)
        await send({"type": "websocket.accept"})
        for bad in (
            {"type": "websocket.send", "text": "a", "bytes": b"b"},
            {"type": "websocket.send"},
            {"type": "websocket.accept"},
            {"type": "websocket.close", "code": 1005},
        ):
            try:
                await send(bad)
            except Exception as exc:
                errors.append(exc)
        await send({"type": "websocket.close"})

    async def main() -> None:
        async with serve(app, http) as (_, port), connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.wait_closed()
            assert ws.close_code == 1000

    run(main())
    assert len(errors) == 5
    assert all(type(e).__name__ == "ProtocolError" for e in errors)
