"""The runtime side: keepalive pings, back-pressure, graceful shutdown, connection counting."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from appserver import Config, Server
from appserver.runtime.ws_protocol import WebSocketProtocol
from tests.websocket.helpers import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    RawClient,
    accept_then_record,
    echo_app,
    frame,
    run,
    serve,
)


def test_client_ping_gets_pong_and_server_pings_are_answered(http: str) -> None:
    async def main() -> None:
        settings = {"ws_ping_interval": 0.05, "ws_ping_timeout": 0.1}
        async with (
            serve(echo_app, http, **settings) as (_, port),
            connect(f"ws://127.0.0.1:{port}/", ping_interval=None) as ws,
        ):
            pong = await ws.ping(b"abc")
            latency = await asyncio.wait_for(pong, 2)
            assert latency >= 0
            # The websockets client answers the server's pings: the connection outlives
            # several ping timeouts.
            await asyncio.sleep(0.5)
            await ws.send("still here")
            assert await ws.recv() == "still here"

    run(main())


def test_raw_ping_pong(http: str) -> None:
    async def main() -> None:
        async with serve(echo_app, http, ws_ping_interval=None) as (_, port):
            client = await RawClient.connect(port)
            await client.handshake()
            client.send(frame(PING, b"raw"))
            assert await client.recv_frame() == (True, PONG, b"raw")
            client.close()

    run(main())


def test_replies_to_messages_that_arrive_together_all_go_out(http: str) -> None:
    # Replies to a batch are held for one write; sizes on both sides of the hold limit.
    sizes = [5, 0, 70_000, 3, 200_000, 1]
    payloads = [bytes([65 + i]) * size for i, size in enumerate(sizes)]

    async def main() -> None:
        async with serve(echo_app, http, ws_max_size=1 << 20) as (_, port):
            client = await RawClient.connect(port)
            await client.handshake()
            client.send(b"".join(frame(BINARY, payload) for payload in payloads))
            for payload in payloads:
                assert await asyncio.wait_for(client.recv_frame(), 5) == (True, BINARY, payload)
            client.close()

    run(main())


def test_held_reply_goes_out_when_the_app_stops_receiving(http: str) -> None:
    # The app answers the first of three messages and then waits on something else: the
    # reply it held (two more messages were waiting) must still leave at once.
    async def main() -> None:
        replied = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            message = await receive()
            await send({"type": "websocket.send", "text": "got " + message["text"]})
            await replied.wait()

        async with serve(app, http) as (_, port):
            client = await RawClient.connect(port)
            await client.handshake()
            client.send(frame(TEXT, b"one") + frame(TEXT, b"two") + frame(TEXT, b"three"))
            assert await asyncio.wait_for(client.recv_frame(), 5) == (True, TEXT, b"got one")
            replied.set()
            client.close()

    run(main())


def test_missing_pong_closes_1011(http: str) -> None:
    disconnects: list[dict[str, Any]] = []

    app = accept_then_record(disconnects)

    async def main() -> None:
        settings = {"ws_ping_interval": 0.05, "ws_ping_timeout": 0.1}
        async with serve(app, http, **settings) as (_, port):
            client = await RawClient.connect(port)
            await client.handshake()
            _, opcode, payload = await client.recv_frame()
            assert opcode == PING and len(payload) == 4
            # We do not answer. More pings may come; then a close with 1011.
            while True:
                _, opcode, payload = await client.recv_frame()
                if opcode == CLOSE:
                    break
                assert opcode == PING
            assert payload.startswith(b"\x03\xf3")  # 1011
            assert await client.at_eof()
            client.close()
            await asyncio.sleep(0.05)

    run(main())
    assert [d["code"] for d in disconnects] == [1011]


def _ws_connections(server: Server) -> list[WebSocketProtocol]:
    return [c for c in server.server_state.connections if isinstance(c, WebSocketProtocol)]


def test_back_pressure_pauses_reading(http: str) -> None:
    received: list[int] = []
    size = 64 * 1024  # large enough that 20 messages cannot all arrive in one read

    async def main() -> None:
        release = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            await release.wait()
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                received.append(message["bytes"][0])
                if len(received) == 20:
                    await send({"type": "websocket.send", "text": "done"})

        settings = {"ws_max_queue": 4, "timeout_graceful_shutdown": 1}
        async with (
            serve(app, http, **settings) as (server, port),
            connect(f"ws://127.0.0.1:{port}/", compression=None) as ws,
        ):

            async def produce() -> None:
                for i in range(20):
                    await ws.send(bytes([i]) * size)

            producer = asyncio.create_task(produce())
            await asyncio.sleep(0.3)
            (protocol,) = _ws_connections(server)
            assert protocol.read_paused
            assert protocol.session is not None
            assert 4 <= protocol.session.queued < 20  # reading stopped near the limit
            release.set()
            assert await ws.recv() == "done"
            await producer
            assert not protocol.read_paused

    run(main())
    assert received == list(range(20))


def test_graceful_shutdown_closes_1012_and_waits(http: str) -> None:
    disconnects: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await asyncio.sleep(0.1)  # some clean-up; shutdown waits for it
                disconnects.append(message)
                return

    async def main() -> None:
        config = Config(app=app, port=0, http=http, log_config=None, lifespan="off")
        config.load()
        server = Server(config)
        await server.startup()
        port = server.servers[0].sockets[0].getsockname()[1]
        async with (
            connect(f"ws://127.0.0.1:{port}/") as ws1,
            connect(f"ws://127.0.0.1:{port}/") as ws2,
        ):
            assert len(server.server_state.connections) == 2
            assert len(_ws_connections(server)) == 2
            server.should_exit = True
            await server.shutdown()
            assert server.server_state.connections == set()
            assert server.server_state.tasks == set()
            for ws in (ws1, ws2):
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1012

    run(main())
    assert [d["code"] for d in disconnects] == [1012, 1012]


def test_shutdown_cancels_a_handler_that_ignores_it(http: str) -> None:
    cancelled: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main() -> None:
        config = Config(
            app=app,
            port=0,
            http=http,
            log_config=None,
            lifespan="off",
            timeout_graceful_shutdown=0.3,
        )
        config.load()
        server = Server(config)
        await server.startup()
        port = server.servers[0].sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            server.should_exit = True
            started = time.monotonic()
            await server.shutdown()
            assert time.monotonic() - started < 3
            await ws.wait_closed()
            assert ws.close_code == 1012

    run(main())
    assert cancelled == [True]


def test_shutdown_answers_a_waiting_receive_without_the_clients_close(http: str) -> None:
    # A client that never answers our close frame: the handler waiting in receive() still
    # hears websocket.disconnect 1012 at once, so the drain does not wait on that client.
    heard: list[dict[str, Any]] = []
    answered = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        heard.append(await receive())
        answered.set()

    async def main() -> None:
        config = Config(app=app, port=0, http=http, log_config=None, lifespan="off")
        config.load()
        server = Server(config)
        await server.startup()
        port = server.servers[0].sockets[0].getsockname()[1]
        client = await RawClient.connect(port)
        await client.handshake()
        server.should_exit = True
        shutdown = asyncio.ensure_future(server.shutdown())
        try:
            await asyncio.wait_for(answered.wait(), 3)
            assert heard == [{"type": "websocket.disconnect", "code": 1012, "reason": ""}]
            assert await client.recv_frame() == (True, CLOSE, b"\x03\xf4")
        finally:
            client.close()
            await asyncio.wait_for(shutdown, 5)
        assert server.server_state.tasks == set()

    run(main())


def test_peer_that_pings_and_never_reads_is_bounded(http: str) -> None:
    # Every ping is answered with a pong; a peer that floods pings and reads nothing must not
    # grow our buffer: once it leaves our writes unread, we stop reading its pings.
    async def main() -> None:
        async with serve(echo_app, http, ws_ping_interval=None, timeout_write=30) as (
            server,
            port,
        ):
            client = await RawClient.connect(port)
            await client.handshake()
            sock = client.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            ping = frame(PING, b"p" * 125)
            protocol = _ws_connections(server)[0]
            largest = 0
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 3
            while not protocol.read_paused:
                assert loop.time() < deadline, "reading never paused"
                client.send(ping * 256)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(client.writer.drain(), 0.05)
                largest = max(largest, protocol.transport.get_write_buffer_size())
            for _ in range(20):  # the client goes on; the server takes nothing more
                client.send(ping * 256)
                await asyncio.sleep(0.01)
                largest = max(largest, protocol.transport.get_write_buffer_size())
            assert protocol.read_paused
            assert largest < 1024 * 1024
            client.writer.transport.abort()

    run(main())
