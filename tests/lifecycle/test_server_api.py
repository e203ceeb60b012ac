"""The Server / ServerState API in-process: defaults, on_tick, capture_signals, the Date header."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

import httpx
import pytest

from appserver import Config, Server
from appserver.server import HANDLED_SIGNALS, ServerState

from .apps import slow

pytestmark = pytest.mark.timeout(30)


def config(**options: Any) -> Config:
    return Config(app=slow, port=0, log_config=None, lifespan="off", **options)


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 20))


def test_server_state_defaults() -> None:
    state = ServerState()
    assert state.total_requests == 0
    assert state.connections == set()
    assert state.tasks == set()
    assert state.default_headers == []


def test_default_headers_are_byte_pairs() -> None:
    state = ServerState()
    state.default_headers = [(b"server", b"appserver")]
    assert state.default_headers == [(b"server", b"appserver")]


def test_server_defaults() -> None:
    cfg = config()
    server = Server(cfg)
    assert server.config is cfg
    assert isinstance(server.server_state, ServerState)
    assert server.started is False
    assert server.should_exit is False
    assert server.force_exit is False
    assert server.last_notified == 0.0


def test_handled_signals() -> None:
    expected = (signal.SIGINT, signal.SIGTERM)
    if sys.platform == "win32":  # pragma: no cover
        expected += (signal.SIGBREAK,)
    assert expected == HANDLED_SIGNALS


def test_startup_without_load_raises_attribute_error() -> None:
    async def main() -> None:
        server = Server(config())
        with pytest.raises(AttributeError, match=r"config\.load\(\)"):
            await server.startup()
        assert not server.started

    run(main)


def test_on_tick_stops_on_should_exit() -> None:
    async def main() -> None:
        server = Server(config())
        assert await server.on_tick(1) is False
        server.should_exit = True
        assert await server.on_tick(1) is True

    run(main)


def test_on_tick_stops_after_max_requests() -> None:
    async def main() -> None:
        cfg = config(limit_max_requests=3)
        cfg.load()
        server = Server(cfg)
        await server.startup()
        try:
            server.server_state.total_requests = 2
            assert await server.on_tick(1) is False
            assert server.should_exit is False
            server.server_state.total_requests = 3
            assert await server.on_tick(1) is True
            assert server.should_exit is True  # so a signal during the drain forces exit
        finally:
            await server.shutdown()

    run(main)


def test_max_requests_jitter_is_bounded() -> None:
    """limit 3 + jitter 2: each server stops somewhere in 3..5 requests."""

    async def threshold() -> int:
        cfg = config(limit_max_requests=3, limit_max_requests_jitter=2)
        cfg.load()
        server = Server(cfg)
        await server.startup()
        try:
            for n in range(10):
                server.server_state.total_requests = n
                if await server.on_tick(1):
                    return n
            raise AssertionError("never stopped")
        finally:
            await server.shutdown()

    async def main() -> None:
        seen = {await threshold() for _ in range(40)}
        assert seen <= {3, 4, 5}
        assert len(seen) > 1  # 40 draws all alike would take a broken random source

    run(main)


def test_capture_signals_installs_and_restores() -> None:
    def mine(sig: int, frame: FrameType | None) -> None:
        pass

    server = Server(config())
    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with server.capture_signals():
            for sig in HANDLED_SIGNALS:
                assert signal.getsignal(sig) == server.handle_exit
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_handle_exit_first_drains_second_forces() -> None:
    server = Server(config())
    server.handle_exit(signal.SIGTERM, None)
    assert (server.should_exit, server.force_exit) == (True, False)
    server.handle_exit(signal.SIGTERM, None)
    assert (server.should_exit, server.force_exit) == (True, True)


def test_date_header_comes_from_the_tick_not_the_request() -> None:
    async def main() -> None:
        cfg = config()
        cfg.load()
        server = Server(cfg)
        await server.startup()
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/"
        loop_task = asyncio.create_task(server.main_loop())
        try:
            async with httpx.AsyncClient() as client:
                # Responses carry the header the last tick computed, whatever the clock says.
                date = (await client.get(url)).headers["date"]
                assert date.endswith(" GMT")
                server.server_state.default_headers = [(b"date", b"from the tick")]
                first = await client.get(url)
                second = await client.get(url)
                assert first.headers["date"] == second.headers["date"] == "from the tick"
                # main_loop refreshes it once a second.
                for _ in range(50):
                    await asyncio.sleep(0.1)
                    response = await client.get(url)
                    if response.headers["date"] != "from the tick":
                        break
                assert response.headers["date"].endswith(" GMT")
                # And it follows the clock: a couple of seconds later it has moved on.
                await asyncio.sleep(2.5)
                later = (await client.get(url)).headers["date"]
                assert later != response.headers["date"]
        finally:
            server.should_exit = True
            await loop_task
            await server.shutdown()

    run(main)


def test_capture_signals_passes_on_only_what_it_caught() -> None:
    heard: list[int] = []

    def mine(sig: int, frame: FrameType | None) -> None:
        heard.append(sig)

    server = Server(config())
    server.handle_exit(signal.SIGTERM, None)  # called directly, not while captured
    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with server.capture_signals():
            pass
        assert heard == []
        with server.capture_signals():
            signal.raise_signal(signal.SIGTERM)
        assert heard == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
