"""A Starlette WebSocket endpoint, end to end."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.websocket.helpers import run, serve

disconnect_codes: list[int] = []


async def chat(websocket: WebSocket) -> None:
    await websocket.accept(subprotocol="chat", headers=[(b"x-room", b"lobby")])
    name = websocket.query_params["name"]
    try:
        while True:
            data: Any = await websocket.receive_json()
            await websocket.send_json({"from": name, "echo": data})
            raw = await websocket.receive_bytes()
            await websocket.send_bytes(raw[::-1])
    except WebSocketDisconnect as exc:
        disconnect_codes.append(exc.code)


app = Starlette(routes=[WebSocketRoute("/chat", chat)])


def test_starlette_websocket_endpoint(http: str) -> None:
    disconnect_codes.clear()

    async def main() -> None:
        async with serve(app, http) as (_, port):
            uri = f"ws://127.0.0.1:{port}/chat?name=ada"
            async with connect(uri, subprotocols=["chat"]) as ws:
                assert ws.subprotocol == "chat"
                assert ws.response.headers["x-room"] == "lobby"
                await ws.send('{"n": 1}')
                assert await ws.recv() == '{"from":"ada","echo":{"n":1}}'
                await ws.send(b"abc")
                assert await ws.recv() == b"cba"
                await ws.close(code=4002)
            # An unknown route: Starlette closes before accepting, which is a 403.
            with pytest.raises(InvalidStatus) as info:
                async with connect(f"ws://127.0.0.1:{port}/nowhere"):
                    pass
            assert info.value.response.status_code == 403

    run(main())
    assert disconnect_codes == [4002]
