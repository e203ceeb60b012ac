"""The request path without sockets: requests fed straight to the protocol, for profiling.

``python -m benchmarks.inprocess N [hello|echo] [httptools|h11]`` sends N requests over 64
connections whose transports only count writes, one request per connection per loop iteration,
and prints the time per request. No kernel, no wrk: what is left is our code, the event loop and
the app, so the figure moves with the code, not with the machine's network stack.

Instructions per request, repeatable where timings drift (the README's callgrind figures)::

    for n in 6400 12800; do
      PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \\
        .venv/bin/python -m benchmarks.inprocess $n hello
    done
    # (total of cg.12800 - total of cg.6400) / 6400: start-up cancels out; with the hash seed
    # fixed, dict probing is the same in every run and so is the count, to the instruction
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import uvloop

from appserver import Config, Server
from benchmarks import apps

CONNECTIONS = 64
REQUESTS = {
    "hello": b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n",
    "echo": b"POST / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Length: 1024\r\n\r\n"
    + b"e" * 1024,
}


class CountingTransport:
    """As much of a transport as the protocol uses; writes are counted, not sent."""

    def __init__(self) -> None:
        self.writes = 0
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def write(self, data: bytes) -> None:
        self.writes += 1

    def writelines(self, data: Any) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def measure(total: int, app_name: str, http: str) -> float:
    """Seconds per request over ``total`` requests (rounded down to whole rounds)."""
    app = apps.hello if app_name == "hello" else apps.echo
    request = REQUESTS[app_name]
    config = Config(app=app, http=http, access_log=False, lifespan="off", log_level="warning")
    config.load()
    server = Server(config)
    server.update_default_headers()  # date and server, as a running server sends them
    state, loop = server.server_state, asyncio.get_running_loop()
    protocol_class: Any = config.http_protocol_class
    connections = []
    for _ in range(CONNECTIONS):
        transport, protocol = CountingTransport(), protocol_class(config, state, {}, loop)
        protocol.connection_made(transport)
        connections.append((protocol, transport))
    rounds = max(1, total // CONNECTIONS)
    started = time.perf_counter()
    for _ in range(rounds):
        for protocol, _transport in connections:
            protocol.data_received(request)
        await asyncio.sleep(0)  # the app tasks run
        await asyncio.sleep(0)  # the end-of-iteration flush
    while sum(transport.writes for _, transport in connections) < rounds * CONNECTIONS:
        await asyncio.sleep(0)
    return (time.perf_counter() - started) / (rounds * CONNECTIONS)


def main(argv: list[str]) -> None:
    total = int(argv[0]) if argv else 64000
    app_name = argv[1] if len(argv) > 1 else "hello"
    http = argv[2] if len(argv) > 2 else "httptools"
    per_request = uvloop.run(measure(total, app_name, http))
    print(f"{app_name} on {http}: {per_request * 1e6:.2f} us per request")


if __name__ == "__main__":
    main(sys.argv[1:])
