"""Hostile clients against a real server process: each is bounded in memory and time.

Slowloris, a slow body, a client that never reads a 50 MiB response, a 1 GiB upload to an app
that never reads, and 2,000 pipelined requests from a client that reads slowly. For each, the
server's resident memory may grow well under 64 MiB (VmHWM, the peak, against VmRSS before),
the hostile connection is closed or answered by the limits, and a normal client is served
meanwhile. Timeouts are set short so the test is quick; nothing here measures speed.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.lifecycle.procs import Proc, free_port, running, wait_until_serving

pytestmark = pytest.mark.timeout(120)

MIB = 1024 * 1024
GROWTH_LIMIT = 64 * MIB


def memory(pid: int) -> dict[str, int]:
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values


@pytest.fixture(scope="module", params=["h11", "httptools"])
def hostile_server(request: pytest.FixtureRequest) -> Iterator[tuple[Proc, int, int]]:
    """One server per parser for the whole module; the memory bound is checked against its
    RSS before the first hostile client, so every later test is held to it too."""
    with _server(request.param) as started:
        yield started


@contextlib.contextmanager
def _server(http: str) -> Iterator[tuple[Proc, int, int]]:
    port = free_port()
    code = (
        f"import appserver; appserver.run('tests.hostile.apps:app', port={port}, http={http!r}, "
        "access_log=False, log_level='warning', timeout_header_read=1, timeout_body_read=1, "
        "timeout_write=1, timeout_keep_alive=5, limit_keep_alive_requests=None)"
    )
    with running(["-c", code]) as proc:
        wait_until_serving(proc, port)
        for _ in range(20):  # warm up the paths the clients use
            httpx.get(f"http://127.0.0.1:{port}/64k")
        yield proc, port, memory(proc.pid)["VmRSS"]


def served_meanwhile(port: int) -> None:
    response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert response.status_code == 200 and response.content == b"ok"


def assert_bounded(proc: Proc, before: int) -> None:
    assert proc.alive(), proc.output()
    growth = memory(proc.pid)["VmHWM"] - before
    assert growth < GROWTH_LIMIT, f"peak RSS grew {growth / MIB:.1f} MiB"


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def closed_by_server(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read until the server closes; fail if it does not within ``timeout``."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return data
        if not chunk:
            return data
        data += chunk
    raise AssertionError("the server did not close the connection")


def test_slowloris(hostile_server: tuple[Proc, int, int]) -> None:
    proc, port, before = hostile_server
    socks = [connect(port) for _ in range(200)]
    for sock in socks:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    for _ in range(3):  # a header line now and then, never the end of the head
        time.sleep(0.3)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.sendall(b"X-a: b\r\n")
        served_meanwhile(port)
    answers = [closed_by_server(sock) for sock in socks]
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers)
    assert_bounded(proc, before)
    for sock in socks:
        sock.close()


def test_slow_body(hostile_server: tuple[Proc, int, int]) -> None:
    proc, port, before = hostile_server
    sock = connect(port)
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
    served_meanwhile(port)
    time.sleep(1.5)  # a gap longer than timeouts.body_read
    answer = closed_by_server(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert_bounded(proc, before)
    sock.close()


def test_client_that_never_reads_a_50mib_response(hostile_server: tuple[Proc, int, int]) -> None:
    proc, port, before = hostile_server
    sock = connect(port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"GET /huge HTTP/1.1\r\nHost: x\r\n\r\n")
    served_meanwhile(port)
    time.sleep(2.0)  # past timeouts.write: the server drops us
    served_meanwhile(port)
    received = closed_by_server(sock)
    assert len(received) < 50 * MIB
    assert_bounded(proc, before)
    sock.close()


def test_1gib_upload_to_an_app_that_never_reads(hostile_server: tuple[Proc, int, int]) -> None:
    proc, port, before = hostile_server
    sock = connect(port)
    sock.sendall(b"POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (1 << 30))
    chunk = b"u" * MIB
    sent = 0
    sock.settimeout(2.0)
    with contextlib.suppress(OSError, TimeoutError):
        while sent < 1 << 30:
            sock.sendall(chunk)
            sent += len(chunk)
    served_meanwhile(port)
    assert sent < 1 << 30  # the server stopped taking it
    answer = closed_by_server(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"connection: close" in answer
    assert_bounded(proc, before)
    sock.close()


def test_2000_pipelined_requests_from_a_slow_reader(hostile_server: tuple[Proc, int, int]) -> None:
    proc, port, before = hostile_server
    sock = connect(port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    burst = b"GET /64k HTTP/1.1\r\nHost: x\r\n\r\n" * 2000
    sock.setblocking(False)
    view = memoryview(burst)
    received = bytearray()
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:  # write what the server takes, read ~1 MiB/s
        with contextlib.suppress(BlockingIOError):
            view = view[sock.send(view) :] if view else view
        with contextlib.suppress(BlockingIOError):
            received += sock.recv(16384)
        time.sleep(0.01)
    served_meanwhile(port)
    assert_bounded(proc, before)
    sock.setblocking(True)
    sock.settimeout(10)
    while view:
        view = view[sock.send(view) :]
    status = b"HTTP/1.1 200 OK\r\n"
    answered = received.count(status)
    tail = bytes(received[-len(status) :])
    while answered < 2000:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        window = tail + chunk  # a status line may straddle two reads
        answered += window.count(status) - tail.count(status)
        tail = window[-len(status) :]
    assert answered == 2000  # every one answered, in the end
    assert_bounded(proc, before)
    sock.close()
