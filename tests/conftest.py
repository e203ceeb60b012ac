"""Shared test helpers: a real in-process server on 127.0.0.1, and a raw-socket client.

Tests stay synchronous and run their async body with :func:`run` (one fresh loop per test,
bounded in time), so the suite needs no pytest-asyncio. Every server started by :func:`serve`
is shut down when the ``async with`` block exits, whatever happened inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import pytest

from appserver import Config, Server

PARSERS = ["h11", "httptools"]
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
    """Run ``coro`` on a new event loop, failing the test if it takes longer than ``timeout``."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture(params=PARSERS)
def http(request: pytest.FixtureRequest) -> str:
    """Each test that takes ``http`` runs once per parser."""
    param: str = request.param
    return param


@contextlib.asynccontextmanager
async def serve(
    app: Any, http: str, *, lifespan: str = "off", **kw: Any
) -> AsyncIterator[tuple[Server, int]]:
    """Start a real server for ``app`` on 127.0.0.1 (a free port); yield it and its port."""
    kw.setdefault("date_header", False)  # deterministic bytes for exact comparisons
    config = Config(app=app, port=0, http=http, log_config=None, lifespan=lifespan, **kw)
    config.load()
    server = Server(config)
    await server.startup()
    assert server.started, "server failed to start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield server, port
    finally:
        server.should_exit = True
        await server.shutdown()


async def read_until_close(reader: asyncio.StreamReader, timeout: float) -> tuple[bytes, bool]:
    """Read until EOF or until ``timeout`` passes with no EOF. Returns (data, closed)."""
    chunks = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return b"".join(chunks), False
        try:
            chunk = await asyncio.wait_for(reader.read(65536), remaining)
        except TimeoutError:
            return b"".join(chunks), False
        except ConnectionResetError:
            return b"".join(chunks), True
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)


async def read_exactly_or_close(
    reader: asyncio.StreamReader, size: int, timeout: float = 2.0
) -> bytes:
    """Read ``size`` bytes, or fewer if the peer closes first or ``timeout`` passes."""
    chunks = []
    got = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while got < size:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            chunk = await asyncio.wait_for(reader.read(size - got), remaining)
        except TimeoutError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


async def exchange(port: int, data: bytes, timeout: float = 2.0) -> tuple[bytes, bool]:
    """Connect, send ``data`` in one write, read until the server closes or ``timeout``.

    Returns (everything received, whether the server closed the connection).
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await read_until_close(reader, timeout)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def tasks_gone(server: Server, timeout: float = 3.0) -> None:
    """Wait until no request task is left; fail naming them after ``timeout`` (a hang bound)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while server.server_state.tasks:
        assert loop.time() < deadline, f"tasks left: {server.server_state.tasks}"
        await asyncio.sleep(0.01)
