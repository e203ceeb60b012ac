"""Deploys, proven: a real nginx on 127.0.0.1 in front of two appserver instances, a bounded
load, and both instances rolled one after the other (SIGTERM, wait for exit, start again)
with zero failed requests.

Why none fail: on SIGTERM an instance keeps serving for timeouts.shutdown_delay with every
response saying connection: close (so nginx stops reusing its upstream connections), then
stops accepting and drains; a request nginx sends to the instance that stopped accepting
meets a refused connection, which nginx retries on the other upstream (proxy_next_upstream:
GET is idempotent). .ci/run installs nginx; elsewhere the test is skipped when nginx is not
installed, unless TESTS_REQUIRE_NGINX is set (CI), where it fails instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/nginx/sbin/nginx") if os.path.exists(p)), None
)

if NGINX is None:
    if os.environ.get("TESTS_REQUIRE_NGINX"):
        raise RuntimeError("nginx is required here (TESTS_REQUIRE_NGINX) but not installed")
    pytest.skip("nginx is not installed (apt-get install nginx-light)", allow_module_level=True)

CLIENTS = 20
LOAD_SECONDS = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(port: int, process: subprocess.Popen[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"port {port} not ready in {timeout}s")


def start_instance(port: int, log: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Configured the way a container would be: APPSERVER_* variables only.
    env.update(
        APPSERVER_APP="tests.ops.apps:hello",
        APPSERVER_HOST="127.0.0.1",
        APPSERVER_PORT=str(port),
        APPSERVER_HEALTH_PATH="/healthz",
        APPSERVER_READINESS_PATH="/readyz",
        APPSERVER_TIMEOUT_SHUTDOWN_DELAY="1s",
        APPSERVER_TIMEOUT_GRACEFUL_SHUTDOWN="10s",
        APPSERVER_ACCESS_LOG="false",
    )
    with log.open("a") as handle:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "appserver", "serve"],
            cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    wait_ready(port, process)
    return process


def stop(process: subprocess.Popen[str], timeout: float = 20.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream app {{
        server 127.0.0.1:{a} max_fails=1 fail_timeout=2s;
        server 127.0.0.1:{b} max_fails=1 fail_timeout=2s;
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries 3;
            proxy_connect_timeout 1s;
        }}
    }}
}}
"""


async def load(port: int, stop_at: float, outcomes: dict[str, int]) -> None:
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=10.0
    ) as client:

        async def one_client() -> None:
            loop = asyncio.get_running_loop()
            while loop.time() < stop_at:
                try:
                    response = await client.get("/")
                    ok = response.status_code == 200 and response.text == "app /"
                    key = "ok" if ok else f"status {response.status_code}"
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                outcomes[key] = outcomes.get(key, 0) + 1

        await asyncio.gather(*(one_client() for _ in range(CLIENTS)))


def test_rolling_both_instances_behind_nginx_loses_no_request(tmp_path: Path) -> None:
    assert NGINX is not None
    a, b, front = free_port(), free_port(), free_port()
    log = tmp_path / "appserver.log"
    (tmp_path / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp_path, a=a, b=b, port=front))
    instances = {a: start_instance(a, log), b: start_instance(b, log)}
    nginx = subprocess.Popen(
        [NGINX, "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    rolled: list[int] = []
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{front}/", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert nginx.poll() is None, (tmp_path / "error.log").read_text()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.1)

        outcomes: dict[str, int] = {}

        async def main() -> None:
            loop = asyncio.get_running_loop()
            stop_at = loop.time() + LOAD_SECONDS
            traffic = asyncio.ensure_future(load(front, stop_at, outcomes))
            await asyncio.sleep(2.0)
            for port in (a, b):  # one after the other, as a rolling deploy does
                status = await asyncio.to_thread(stop, instances[port])
                rolled.append(status)
                instances[port] = await asyncio.to_thread(start_instance, port, log)
                await asyncio.sleep(1.5)
            await traffic

        asyncio.run(main())
    finally:
        nginx.send_signal(signal.SIGQUIT)
        try:
            nginx.wait(10)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait()
        for process in instances.values():
            stop(process)
    assert rolled == [0, 0], log.read_text()
    failures = {k: n for k, n in outcomes.items() if k != "ok"}
    assert outcomes.get("ok", 0) > 500, outcomes  # real load went through both rolls
    assert failures == {}, f"{failures}\n{(tmp_path / 'error.log').read_text()}"
