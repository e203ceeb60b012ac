"""Prometheus metrics: what is counted, the exposition prometheus-client parses, and the sum
over worker processes (real servers, real clients, a real supervisor)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import exchange, run, serve
from tests.ops.apps import hello

ROOT = Path(__file__).resolve().parents[2]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and labels, as Prometheus would read it."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_requests_durations_bytes_and_connections_are_counted(http: str) -> None:
    async def main() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        async with (
            serve(hello, http, metrics_path="/metrics") as (_, port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            for _ in range(3):
                await client.get("/")
            await client.post("/", content=b"x" * 100)
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
                await ws.send("hi")
                await ws.recv()
                scrape = await client.get("/metrics")
        assert scrape.headers["content-type"].startswith("text/plain; version=")
        return samples(scrape.text)

    got = run(main())
    assert got[("appserver_requests_total", (("method", "GET"), ("status", "2xx")))] == 3
    assert got[("appserver_requests_total", (("method", "POST"), ("status", "2xx")))] == 1
    assert got[("appserver_request_duration_seconds_count", ())] == 4
    assert got[("appserver_request_duration_seconds_bucket", (("le", "+Inf"),))] == 4
    assert got[("appserver_requests_in_flight", ())] == 1  # the scrape itself
    assert got[("appserver_connections", (("protocol", "http"),))] == 1
    assert got[("appserver_connections", (("protocol", "websocket"),))] == 1
    assert got[("appserver_received_bytes_total", ())] > 100
    assert got[("appserver_sent_bytes_total", ())] > 0
    assert got[("appserver_worker_restarts_total", ())] == 0


def test_rejections_are_counted_by_reason() -> None:
    async def main() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        async with serve(
            hello, "httptools", metrics_path="/metrics", limit_body_size=10, limit_concurrency=2
        ) as (_, port):
            big = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n" + b"x" * 50
            assert (await exchange(port, big))[0].startswith(b"HTTP/1.1 413 ")
            fat = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 70000 + b"\r\n\r\n"
            assert (await exchange(port, fat))[0].startswith(b"HTTP/1.1 431 ")
            assert (await exchange(port, b"NOT HTTP\r\n\r\n"))[0].startswith(b"HTTP/1.1 400 ")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                slow = [asyncio.ensure_future(client.get("/slow")) for _ in range(2)]
                await asyncio.sleep(0.2)
                assert (await client.get("/")).status_code == 503
                await asyncio.gather(*slow)
                return samples((await client.get("/metrics")).text)

    got = run(main())
    for reason in ("content_too_large", "headers_too_large", "bad_request", "concurrency"):
        assert got[("appserver_rejections_total", (("reason", reason),))] == 1, reason


def test_method_labels_are_bounded() -> None:
    async def main() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        async with (
            serve(hello, "h11", metrics_path="/metrics") as (_, port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            for method in ("PROPFIND", "MKCOL", "PURGE"):  # methods llhttp knows
                await client.request(method, "/")
            return samples((await client.get("/metrics")).text)

    got = run(main())
    assert got[("appserver_requests_total", (("method", "other"), ("status", "2xx")))] == 3


def test_metrics_bind_alone_serves_metrics_on_its_own_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        metrics_port = sock.getsockname()[1]

    async def main() -> None:
        async with (
            serve(hello, "httptools", metrics_bind=f"127.0.0.1:{metrics_port}") as (_, port),
            httpx.AsyncClient() as client,
        ):
            await client.get(f"http://127.0.0.1:{port}/")
            scrape = await client.get(f"http://127.0.0.1:{metrics_port}/metrics")
            got = samples(scrape.text)
            assert got[("appserver_requests_total", (("method", "GET"), ("status", "2xx")))] == 1
            # On the app's listeners /metrics is the app's.
            assert (await client.get(f"http://127.0.0.1:{port}/metrics")).text == "app /metrics"

    run(main())


def _wait_for_port(port: int, process: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the server did not start listening")


def test_metrics_are_summed_over_workers_and_survive_a_worker_restart(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "appserver", "serve", "tests.ops.apps:hello", "--port", str(port),
         "--workers", "2", "--metrics-path", "/metrics", "--no-access-log", "--lifespan", "off"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _wait_for_port(port, process)
        time.sleep(1.0)  # both workers up
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(40):
                # A new connection each time: the kernel spreads them over both workers.
                assert client.get("/", headers={"connection": "close"}).status_code == 200
            time.sleep(1.5)  # every worker has published its counts since
            got = samples(client.get("/metrics", headers={"connection": "close"}).text)
            key = ("appserver_requests_total", (("method", "GET"), ("status", "2xx")))
            assert got[key] == 40
            # Kill one worker: its counts are kept, the restart is counted.
            pids = [int(p) for p in subprocess.check_output(
                ["pgrep", "-P", str(process.pid)], text=True).split()]  # fmt: skip
            os.kill(pids[0], signal.SIGKILL)
            deadline = time.monotonic() + 20
            while True:
                time.sleep(0.5)
                got = samples(client.get("/metrics", headers={"connection": "close"}).text)
                if got[("appserver_worker_restarts_total", ())] == 1:
                    break
                assert time.monotonic() < deadline, "the restart was not counted"
            # At least the 40 (the scrapes since count too), never fewer: no counts lost.
            assert got[key] >= 40
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            out, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
    assert process.returncode == 0, out


@pytest.mark.parametrize("missing", [True])
def test_check_says_when_prometheus_client_is_missing(missing: bool, tmp_path: Path) -> None:
    config = tmp_path / "m.toml"
    config.write_text('app = "tests.ops.apps:hello"\n[metrics]\npath = "/metrics"\n')
    blocker = tmp_path / "block"
    blocker.mkdir()
    # A prometheus_client that cannot be imported, first on the path.
    (blocker / "prometheus_client.py").write_text("raise ImportError('blocked for the test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-m", "appserver", "check", str(config)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 1
    assert "metrics.path needs prometheus-client: pip install 'appserver[metrics]'" in done.stderr


def test_a_worker_folded_into_retired_is_never_counted_twice(tmp_path: Path) -> None:
    from appserver.ops.metrics import Metrics, SnapshotDirectory, merge

    directory = SnapshotDirectory(tmp_path)
    worker = Metrics()
    worker.observe("GET", 200, 0.001)
    directory.write("worker-1", worker.snapshot())
    directory.write("worker-2", worker.snapshot())
    directory.retire("worker-1")
    assert merge(directory.read())["requests"] == {"GET 2": 2}
    # A reader between the fold and the unlink sees both files: worker-1 counts once.
    directory.write("worker-1", worker.snapshot())
    assert merge(directory.read())["requests"] == {"GET 2": 2}
