"""Signals, draining and start-up failures, each against a real server in a subprocess.

The servers run ``appserver.run(...)`` with the apps of ``apps.py``. Time bounds here only catch
hangs; nothing asserts how fast anything is.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from .procs import (
    HERE,
    connect_refused,
    free_port,
    running,
    wait_for_output,
    wait_until_serving,
)

pytestmark = pytest.mark.timeout(90)

# Signals reach Python handlers differently under uvloop (libuv's loop) and asyncio.
LOOPS = pytest.mark.parametrize("loop", ["asyncio", "uvloop"])


def serve_args(app: str, port: int, **options: Any) -> list[str]:
    kwargs = "".join(f", {key}={value!r}" for key, value in options.items())
    return ["-c", f"import appserver; appserver.run({app!r}, port={port}{kwargs})"]


class Request(threading.Thread):
    """A GET in a background thread; ``response`` or ``error`` once it is done."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.response: httpx.Response | None = None
        self.error: Exception | None = None
        self.start()

    def run(self) -> None:
        try:
            self.response = httpx.get(self.url, timeout=60)
        except Exception as exc:
            self.error = exc

    def result(self, timeout: float = 30) -> httpx.Response | None:
        self.join(timeout)
        assert not self.is_alive(), "request still running"
        return self.response


def became_refused(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if connect_refused(port):
            return True
        time.sleep(0.05)
    return False


def order(output: str, *texts: str) -> list[int]:
    positions = [output.find(text) for text in texts]
    assert all(p >= 0 for p in positions), f"missing one of {texts} in:\n{output}"
    return positions


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if " ERROR " in line]


# --- draining ---------------------------------------------------------------------------------


@LOOPS
def test_sigterm_lets_in_flight_request_finish(loop: str) -> None:
    port = free_port()
    with running(serve_args("tests.lifecycle.apps:slow", port, loop=loop)) as proc:
        wait_until_serving(proc, port)
        slow = Request(f"http://127.0.0.1:{port}/slow?s=3")
        wait_for_output(proc, "slow request begun")
        proc.signal(signal.SIGTERM)
        # The listener closes at once; the slow request is still being answered.
        assert became_refused(port), "new connections still accepted while draining"
        response = slow.result()
        assert response is not None, slow.error
        assert response.status_code == 200
        assert response.text == "slow done"
        assert response.headers["connection"] == "close"
        result = proc.wait()
    assert result.returncode == 0, result.output
    done, lifespan, finished = order(
        result.output, "slow request done", "lifespan shutdown", "Finished server process"
    )
    assert done < lifespan < finished
    assert "Traceback" not in result.output


@LOOPS
def test_second_signal_forces_exit(loop: str) -> None:
    """Chosen: a forced exit ends with status 1, because in-flight work was cut short."""
    port = free_port()
    with running(serve_args("tests.lifecycle.apps:slow", port, loop=loop)) as proc:
        wait_until_serving(proc, port)
        slow = Request(f"http://127.0.0.1:{port}/slow?s=60")
        wait_for_output(proc, "slow request begun")
        proc.signal(signal.SIGTERM)
        wait_for_output(proc, "Waiting for connections to close")
        assert proc.alive()  # the first signal alone waits for the slow request
        proc.signal(signal.SIGTERM)
        result = proc.wait()
        assert slow.result() is None
        assert isinstance(slow.error, httpx.TransportError)
    assert result.returncode == 1, result.output
    assert "slow request cancelled" in result.output
    assert "slow request done" not in result.output
    assert "Forced exit" in result.output
    # A forced exit skips the lifespan shutdown: the app asked for nothing, it is told to go.
    assert "lifespan shutdown" not in result.output


@LOOPS
def test_graceful_timeout_cancels_straggler(loop: str) -> None:
    port = free_port()
    args = serve_args("tests.lifecycle.apps:slow", port, timeout_graceful_shutdown=0.5, loop=loop)
    with running(args) as proc:
        wait_until_serving(proc, port)
        slow = Request(f"http://127.0.0.1:{port}/slow?s=60")
        wait_for_output(proc, "slow request begun")
        proc.signal(signal.SIGTERM)
        result = proc.wait()  # well before the straggler's 60 s
        assert slow.result() is None
        assert isinstance(slow.error, httpx.TransportError)
    assert result.returncode == 0, result.output
    cancelled, lifespan = order(result.output, "slow request cancelled", "lifespan shutdown")
    assert cancelled < lifespan
    assert "timeout graceful shutdown exceeded" in result.output


def test_idle_keep_alive_connection_closed_on_drain() -> None:
    port = free_port()
    args = serve_args("tests.lifecycle.apps:slow", port, timeout_keep_alive=120)
    with running(args) as proc:
        wait_until_serving(proc, port)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            response = b""
            while not response.endswith(b"hello"):
                chunk = client.recv(4096)
                assert chunk, response
                response += chunk
            assert response.startswith(b"HTTP/1.1 200 ")
            assert b"connection: close" not in response.lower()  # kept alive
            proc.signal(signal.SIGTERM)
            assert client.recv(4096) == b""  # closed by the server, not the 120 s timeout
        result = proc.wait()
    assert result.returncode == 0, result.output


def test_limit_concurrency_answers_503() -> None:
    port = free_port()
    with running(serve_args("tests.lifecycle.apps:slow", port, limit_concurrency=1)) as proc:
        wait_until_serving(proc, port)
        slow = Request(f"http://127.0.0.1:{port}/slow?s=2")
        wait_for_output(proc, "slow request begun")
        busy = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert busy.status_code == 503
        assert busy.text == "Service Unavailable"
        response = slow.result()
        assert response is not None and response.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
        proc.signal(signal.SIGTERM)
        assert proc.wait().returncode == 0


def test_limit_max_requests_exits_cleanly() -> None:
    port = free_port()
    args = serve_args(
        "tests.lifecycle.apps:slow", port, limit_max_requests=5, limit_max_requests_jitter=0
    )
    with running(args) as proc:
        wait_until_serving(proc, port)  # response 1
        with httpx.Client(timeout=10) as client:
            for _ in range(4):
                assert client.get(f"http://127.0.0.1:{port}/").status_code == 200
        result = proc.wait()  # no signal: the fifth response ends the process
    assert result.returncode == 0, result.output
    assert "Maximum request limit of 5 exceeded" in result.output
    assert "lifespan shutdown" in result.output
    assert result.output.count('"GET / HTTP/1.1" 200') == 5


# --- start-up ---------------------------------------------------------------------------------


def test_port_in_use_is_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with running(serve_args("tests.lifecycle.apps:slow", port)) as proc:
            result = proc.wait()
    assert result.returncode == 3, result.output  # STARTUP_FAILURE, as uvicorn
    assert error_lines(result.output) == [
        line for line in result.output.splitlines() if "cannot bind" in line
    ]
    assert len(error_lines(result.output)) == 1
    assert f"cannot bind 127.0.0.1:{port}: Address already in use" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("tests.lifecycle.nosuch:app", "no module named 'tests.lifecycle.nosuch'"),
        ("tests.lifecycle.apps:nosuch", "has no attribute 'nosuch'"),
    ],
)
def test_app_import_error_is_one_line_error(target: str, reason: str) -> None:
    with running(serve_args(target, free_port())) as proc:
        result = proc.wait()
    assert result.returncode == 1, result.output
    (line,) = error_lines(result.output)
    assert repr(target) in line
    assert reason in line
    assert "Traceback" not in result.output


def test_lifespan_startup_failure_exits_without_serving() -> None:
    port = free_port()
    args = serve_args("tests.lifecycle.apps:startup_fails", port, lifespan="on")
    with running(args) as proc:
        result = proc.wait()
    assert result.returncode == 3, result.output  # STARTUP_FAILURE, as uvicorn
    assert "database unreachable" in result.output
    assert "Application startup failed" in result.output
    assert "Listening on" not in result.output  # never bound
    assert "request served" not in result.output
    assert "Traceback" not in result.output


def test_no_request_served_before_lifespan_startup_completes() -> None:
    port = free_port()
    with running(serve_args("tests.lifecycle.apps:slow_startup", port)) as proc:
        wait_for_output(proc, "lifespan startup begun")
        # Startup takes 2 s; the socket is bound only after it, so this is refused.
        assert connect_refused(port)
        response = wait_until_serving(proc, port)
        assert response.status_code == 200
        proc.signal(signal.SIGTERM)
        result = proc.wait()
    assert result.returncode == 0, result.output
    done, served = order(result.output, "lifespan startup done", "request served")
    assert done < served


# --- embedding --------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_program_signal_handler_restored_and_told(sig: signal.Signals) -> None:
    port = free_port()
    with running([str(HERE / "embedded.py"), str(port)]) as proc:
        wait_until_serving(proc, port)
        proc.signal(sig)
        result = proc.wait()
    assert result.returncode == 0, result.output
    lifespan, told, returned = order(
        result.output,
        "lifespan shutdown",
        f"program handler got signal {int(sig)}",
        "serve returned; handler restored: True",
    )
    assert lifespan < told < returned
    assert result.output.count("program handler got signal") == 1


@pytest.mark.parametrize("stuck", ["startup", "shutdown"])
def test_second_signal_forces_exit_from_stuck_lifespan(stuck: str) -> None:
    """An app whose lifespan startup or shutdown never completes cannot hold the process."""
    port = free_port()
    args = serve_args("tests.lifecycle.apps:stuck_lifespan", port)
    with running(args, env={"STUCK": stuck}) as proc:
        if stuck == "startup":
            wait_for_output(proc, "startup stuck")
            proc.signal(signal.SIGTERM)
        else:
            wait_until_serving(proc, port)
            proc.signal(signal.SIGTERM)
            wait_for_output(proc, "shutdown stuck")
        time.sleep(0.3)
        assert proc.alive()  # the first signal waits for the app
        proc.signal(signal.SIGTERM)
        result = proc.wait()
    assert result.returncode == 1, result.output
    assert f"Forced exit during application {stuck}" in result.output
    assert "Traceback" not in result.output


# --- other ways to bind -----------------------------------------------------------------------


def test_serves_on_unix_socket_and_removes_it(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    with running(serve_args("tests.lifecycle.apps:slow", 0, uds=str(path))) as proc:
        wait_for_output(proc, f"Listening on unix:{path}")
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(path))) as client:
            assert client.get("http://localhost/").text == "hello"
        proc.signal(signal.SIGTERM)
        result = proc.wait()
    assert result.returncode == 0, result.output
    assert not path.exists()


def test_serves_on_inherited_fd() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        fd = sock.fileno()
        os.set_inheritable(fd, True)
        with running(serve_args("tests.lifecycle.apps:slow", 0, fd=fd), pass_fds=(fd,)) as proc:
            assert wait_until_serving(proc, port).text == "hello"
            proc.signal(signal.SIGTERM)
            result = proc.wait()
    assert result.returncode == 0, result.output


def test_startup_called_directly_reports_port_in_use() -> None:
    """A program driving startup() itself (spec example 8) gets the reason in the log too."""
    code = """if True:
        import asyncio, sys
        from appserver import Config, Server

        async def main():
            config = Config(app="tests.lifecycle.apps:slow", port=int(sys.argv[1]))
            config.load()
            server = Server(config)
            await server.startup()
            print("started:", server.started, "should_exit:", server.should_exit)

        asyncio.run(main())
    """
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with running(["-c", code, str(port)]) as proc:
            result = proc.wait()
    assert result.returncode == 0, result.output
    (line,) = error_lines(result.output)
    assert f"cannot bind 127.0.0.1:{port}: Address already in use" in line
    assert "started: False should_exit: True" in result.output
