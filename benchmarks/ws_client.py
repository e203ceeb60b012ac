"""WebSocket echo load: our own asyncio client built on the ``websockets`` library.

Each connection sends a text message and waits for its echo, back to back, until the time is up.
The client runs in the harness process on the load-generator core; with one core for the
client, the numbers are a comparison between servers, not either server's ceiling.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks.report import percentile


async def echo_load(port: int, connections: int, duration: float, size: int = 16) -> dict[str, Any]:
    """Messages/s and round-trip percentiles (ms) over ``connections`` echo loops."""
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{port}/"
    message = "x" * size
    latencies: list[float] = []
    errors = 0

    async def worker(deadline: float) -> None:
        nonlocal errors
        async with connect(url, compression=None, max_size=None, open_timeout=10) as ws:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                await ws.send(message)
                reply = await ws.recv()
                latencies.append(time.perf_counter() - start)
                if reply != message:
                    errors += 1

    started = time.perf_counter()
    results = await asyncio.gather(
        *(worker(started + duration) for _ in range(connections)), return_exceptions=True
    )
    elapsed = time.perf_counter() - started
    failures = [r for r in results if isinstance(r, BaseException)]
    errors += len(failures)
    if failures and not latencies:
        raise RuntimeError(f"WebSocket echo failed: {failures[0]!r}")
    latencies.sort()
    return {
        "messages": len(latencies),
        "duration_s": elapsed,
        "rate": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": percentile(latencies, 50) * 1000 if latencies else None,
        "p99_ms": percentile(latencies, 99) * 1000 if latencies else None,
        "error_count": errors,
    }


async def probe(port: int, timeout: float = 5.0) -> str | None:
    """None when the server on ``port`` completes a WebSocket echo, else why not."""
    from websockets.asyncio.client import connect

    async def exchange() -> object:
        async with connect(f"ws://127.0.0.1:{port}/", compression=None, open_timeout=timeout) as ws:
            await ws.send("probe")
            return await ws.recv()

    try:
        reply = await asyncio.wait_for(exchange(), timeout)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    if reply != "probe":
        return f"echo returned {reply!r}"
    return None


def run(coro: Any) -> Any:
    """Run a coroutine on uvloop when installed (a faster client), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    return uvloop.run(coro)
