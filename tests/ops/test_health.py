"""Liveness and readiness: served before the app, readiness 503 from the start of a drain,
timeouts.shutdown_delay, health.bind (real servers on 127.0.0.1, real clients)."""

from __future__ import annotations

import asyncio
import logging
import socket

import httpx
import pytest

from appserver import Config, Server
from tests.conftest import exchange, run, serve
from tests.ops.apps import hello
from tests.websocket.helpers import handshake_request

PROBES = {"health_path": "/healthz", "readiness_path": "/readyz"}


def test_probes_answer_before_the_app(http: str) -> None:
    async def main() -> None:
        async with (
            serve(hello, http, lifespan="on", **PROBES) as (_, port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            live = await client.get("/healthz")
            assert (live.status_code, live.text) == (200, "ok\n")
            assert live.headers["cache-control"] == "no-store"
            ready = await client.get("/readyz")
            assert (ready.status_code, ready.text) == (200, "ready\n")
            head = await client.head("/readyz")
            assert head.status_code == 200 and head.content == b""
            other = await client.get("/healthz/x")
            assert other.text == "app /healthz/x"  # exact paths only; the rest is the app's

    run(main())


def test_probes_follow_root_path() -> None:
    async def main() -> None:
        async with (
            serve(hello, "httptools", root_path="/api", **PROBES) as (_, port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            assert (await client.get("/healthz")).text == "ok\n"

    run(main())


def test_probes_are_answered_over_limit_concurrency() -> None:
    # A process busy up to its limit is still alive: the probe must not get the 503.
    async def main() -> None:
        async with (
            serve(hello, "httptools", limit_concurrency=1, **PROBES) as (_, port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            slow = asyncio.ensure_future(client.get("/slow"))
            await asyncio.sleep(0.2)
            busy = await client.get("/")
            assert busy.status_code == 503
            assert (await client.get("/healthz")).status_code == 200
            await slow

    run(main())


def test_probes_stay_out_of_the_access_log_unless_asked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="appserver.access")

    async def main(log_probes: bool) -> list[str]:
        caplog.clear()
        async with (
            serve(hello, "h11", access_log=True, health_access_log=log_probes, **PROBES) as (
                _,
                port,
            ),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            await client.get("/healthz")
            await client.get("/readyz")
            await client.get("/page")
        return [r.getMessage() for r in caplog.records if r.name == "appserver.access"]

    quiet = run(main(False))
    assert len(quiet) == 1 and '"GET /page HTTP/1.1" 200' in quiet[0]
    logged = run(main(True))
    assert [line.split('"')[1] for line in logged] == [
        "GET /healthz HTTP/1.1",
        "GET /readyz HTTP/1.1",
        "GET /page HTTP/1.1",
    ]


def _request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def test_readiness_is_503_from_the_start_of_a_drain_and_the_delay_keeps_serving() -> None:
    async def main() -> None:
        config = Config(
            app=hello,
            port=0,
            log_config=None,
            lifespan="off",
            timeout_shutdown_delay=1.0,
            **PROBES,
        )
        config.load()
        server = Server(config)
        await server.startup()
        port = server.servers[0].sockets[0].getsockname()[1]
        # A keep-alive connection opened before the drain.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_request("/readyz"))
        assert b"200 OK" in await reader.readuntil(b"ready\n")
        stopping = asyncio.ensure_future(server.shutdown())
        await asyncio.sleep(0.2)
        # During the delay: new connections are still accepted and served, readiness is 503,
        # and every response says connection: close.
        data, closed = await exchange(port, _request("/readyz"), timeout=2.0)
        assert data.startswith(b"HTTP/1.1 503 ") and b"draining\n" in data
        assert b"connection: close\r\n" in data and closed
        data, closed = await exchange(port, _request("/page"), timeout=2.0)
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"app /page")
        assert b"connection: close\r\n" in data and closed
        # The connection that was idle gets one more request, answered with close.
        writer.write(_request("/page"))
        rest = await asyncio.wait_for(reader.read(), 2.0)
        assert rest.startswith(b"HTTP/1.1 200 ") and b"connection: close\r\n" in rest
        writer.close()
        assert not stopping.done()  # still in the delay
        await asyncio.wait_for(stopping, 5.0)
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)  # the drain stopped accepting

    run(main())


def test_without_a_delay_the_drain_stops_accepting_at_once() -> None:
    async def main() -> None:
        config = Config(app=hello, port=0, log_config=None, lifespan="off", **PROBES)
        config.load()
        server = Server(config)
        await server.startup()
        port = server.servers[0].sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_request("/readyz"))
        await reader.readuntil(b"ready\n")
        await server.shutdown()
        assert server.server_state.readiness.value == "draining"
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        writer.close()

    run(main())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_health_bind_serves_the_probes_on_their_own_listener_and_never_the_app() -> None:
    health_port = _free_port()

    async def main() -> None:
        async with (
            serve(hello, "httptools", health_bind=f"127.0.0.1:{health_port}", **PROBES) as (
                server,
                port,
            ),
            httpx.AsyncClient() as client,
        ):
            assert len(server.servers) == 2
            ops = f"http://127.0.0.1:{health_port}"
            assert (await client.get(f"{ops}/healthz")).text == "ok\n"
            assert (await client.get(f"{ops}/readyz")).text == "ready\n"
            missing = await client.get(f"{ops}/")
            assert missing.status_code == 404  # the app is never served there
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "app /"

    run(main())


def test_health_bind_alone_is_refused() -> None:
    from appserver.errors import ConfigError

    with pytest.raises(ConfigError, match=r"health\.bind serves nothing"):
        Config(app=hello, health_bind="127.0.0.1:9")


def test_the_operations_listener_never_takes_a_websocket_upgrade_to_the_app() -> None:
    health_port = _free_port()
    upgrade, _ = handshake_request("/admin/ws")

    async def main() -> bytes:
        async with serve(hello, "httptools", health_bind=f"127.0.0.1:{health_port}", **PROBES):
            data, _ = await exchange(health_port, upgrade, timeout=1.0)
            return data

    assert run(main()).startswith(b"HTTP/1.1 404 ")


def test_health_bind_moves_metrics_off_the_app_listeners_too() -> None:
    health_port = _free_port()

    async def main() -> tuple[str, int]:
        async with (
            serve(
                hello, "h11", health_bind=f"127.0.0.1:{health_port}", metrics_path="/metrics"
            ) as (_, port),
            httpx.AsyncClient() as client,
        ):
            on_app = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            on_ops = (await client.get(f"http://127.0.0.1:{health_port}/metrics")).status_code
            return on_app, on_ops

    on_app, on_ops = run(main())
    assert on_app == "app /metrics" and on_ops == 200
