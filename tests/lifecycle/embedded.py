"""A program with its own SIGINT and SIGTERM handler that embeds ``await server.serve()``.

Usage: python embedded.py PORT. Prints what it learns so the test can check the order of events.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from types import FrameType

from appserver import Config, Server


def on_signal(sig: int, frame: FrameType | None) -> None:
    print(f"program handler got signal {sig}", flush=True)


async def main(port: int) -> None:
    server = Server(Config(app="tests.lifecycle.apps:slow", port=port))
    await server.serve()
    restored = all(signal.getsignal(sig) is on_signal for sig in (signal.SIGINT, signal.SIGTERM))
    print(f"serve returned; handler restored: {restored}", flush=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    asyncio.run(main(int(sys.argv[1])))
