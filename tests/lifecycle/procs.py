"""Running servers as real subprocesses: start, wait until they answer, signal, collect."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
HERE = Path(__file__).resolve().parent

# Generous bounds: they catch a hang, they do not measure speed.
START_TIMEOUT = 15.0
EXIT_TIMEOUT = 15.0


@contextlib.contextmanager
def _sigint_not_ignored() -> Iterator[None]:
    """A shell's background jobs start with SIGINT ignored, an ignored signal stays ignored
    across exec, and Python then never installs KeyboardInterrupt. Children started in this
    block get the disposition an interactive program has (exec resets handled signals)."""
    if signal.getsignal(signal.SIGINT) != signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass
class Result:
    returncode: int
    output: str


class Proc:
    """A child Python process whose stdout and stderr go to one file (no pipe to fill up).

    ``args`` follow the interpreter, or ``program`` (a script run by its own name, as a console
    script is) when given."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        pass_fds: Sequence[int] = (),
        program: str | None = None,
    ) -> None:
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), str(cwd or ""), full_env.get("PYTHONPATH", "")) if p
        )
        with _sigint_not_ignored():
            self.popen = subprocess.Popen(
                [program or sys.executable, *args],
                cwd=cwd or ROOT,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                pass_fds=pass_fds,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        # The child writes through the same open file, so it shares the file offset: a seek
        # here would move where its next line lands, over lines already written (seen as a
        # log line that "never printed"). pread reads without moving it.
        fd, chunks, offset = self._log.fileno(), [], 0
        while chunk := os.pread(fd, 1 << 20, offset):
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks).decode("utf-8", "replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float = EXIT_TIMEOUT) -> Result:
        """Wait for exit; a process still running after ``timeout`` is killed and fails the test."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"process did not exit within {timeout} s; output:\n{self.output()}"
            ) from None
        return Result(code, self.output())

    def kill(self) -> None:
        if self.alive():
            self.popen.kill()
            self.popen.wait(5)

    def close(self) -> None:
        self.kill()
        self._log.close()


@contextlib.contextmanager
def running(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    pass_fds: Sequence[int] = (),
    program: str | None = None,
) -> Iterator[Proc]:
    proc = Proc(args, cwd=cwd, env=env, pass_fds=pass_fds, program=program)
    try:
        yield proc
    finally:
        proc.close()


def stop(proc: Proc, status: int = 0, timeout: float = EXIT_TIMEOUT) -> str:
    """SIGTERM, then the exit ``status`` expected; the output."""
    proc.signal(signal.SIGTERM)
    result = proc.wait(timeout)
    assert result.returncode == status, result.output
    return result.output


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_busy(port: int) -> bool:
    """True when something already listens on ``port`` (on 127.0.0.1 or all interfaces)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def wait_until_serving(proc: Proc, port: int, timeout: float = START_TIMEOUT) -> httpx.Response:
    """GET / until the server answers; fails if the process exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise AssertionError(f"server exited with {proc.popen.returncode}:\n{proc.output()}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/", timeout=2.0)
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"server did not answer within {timeout} s:\n{proc.output()}")


def wait_for_output(proc: Proc, text: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while text not in proc.output():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never printed; output:\n{proc.output()}")
        if not proc.alive():
            raise AssertionError(f"exited before printing {text!r}:\n{proc.output()}")
        time.sleep(0.05)


def connect_refused(port: int) -> bool:
    """True when nothing accepts a TCP connection on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0):
            return False
    except ConnectionRefusedError:
        return True
