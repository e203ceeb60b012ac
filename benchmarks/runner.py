"""Processes and sockets: start a server, pin it, drive load at it, read its memory, stop it."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from benchmarks import apps, ws_client, ws_raw
from benchmarks.report import parse_wrk_output
from benchmarks.serve import HOST
from benchmarks.workloads import Workload

ROOT = Path(__file__).resolve().parent.parent
LUA_SCRIPT = Path(__file__).resolve().parent / "wrk_report.lua"
START_TIMEOUT = 20.0


@dataclass
class Pinning:
    """Which cores the server and the load generator get (None: no pinning, one core)."""

    server: int | None = None
    load: int | None = None

    @classmethod
    def detect(cls) -> Pinning:
        if not hasattr(os, "sched_getaffinity"):
            return cls()
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            return cls()
        return cls(server=cores[0], load=cores[1])

    @property
    def enabled(self) -> bool:
        return self.server is not None

    def describe(self) -> str:
        if not self.enabled:
            return "no pinning (fewer than 2 cores available)"
        return f"server on core {self.server}, load generator (wrk, harness) on core {self.load}"


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise RLIMIT_NOFILE (inherited by the servers) so 1000 idle sockets fit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pin_process(pid: int, core: int) -> None:
    """Pin every thread of ``pid`` (affinity is per thread on Linux) to ``core``."""
    tasks = Path(f"/proc/{pid}/task")
    tids = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [pid]
    for tid in tids:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(tid, {core})


def cpu_times() -> tuple[int, int]:
    """(steal, total) clock ticks of all CPUs so far, from /proc/stat ((0, 0) elsewhere).

    Steal is time the hypervisor gave this VM's vCPUs to someone else: on a shared host it is
    what moves one run's numbers against another's.
    """
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0, 0
    ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (ticks[7] if len(ticks) > 7 else 0), sum(ticks)


def steal_pct(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """The hypervisor's share of the CPU time between two ``cpu_times()`` (None: unknown)."""
    total = after[1] - before[1]
    return None if total <= 0 else 100.0 * (after[0] - before[0]) / total


_STATUS_FIELD = re.compile(r"^(VmRSS|VmHWM):\s+(\d+)\s+kB", re.MULTILINE)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of ``pid`` in KiB, from /proc/PID/status."""
    text = Path(f"/proc/{pid}/status").read_text()
    return {name: int(value) for name, value in _STATUS_FIELD.findall(text)}


@dataclass
class ServerProcess:
    server: str
    workload: Workload
    port: int
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        # pread, not seek: the server shares this file's offset and would write over its log.
        size = os.fstat(self.log.fileno()).st_size
        tail = os.pread(self.log.fileno(), 8000, max(0, size - 8000))
        return tail.decode(errors="replace")[-2000:]


def _affinity(core: int | None) -> Callable[[], None] | None:
    if core is None:
        return None
    return lambda: os.sched_setaffinity(0, {core})


def start_server(server: str, workload: Workload, pinning: Pinning) -> ServerProcess:
    """Start ``python -m benchmarks.serve`` and wait until its port accepts connections."""
    if workload.workers > 1:
        pinning = Pinning(None, None)  # several processes: the cores are shared
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.serve",
        "--server",
        server,
        "--app",
        workload.app,
        "--http",
        workload.http,
        "--loop",
        workload.loop,
        "--port",
        str(port),
    ]
    if pinning.server is not None:
        cmd += ["--cpu", str(pinning.server)]
    if workload.tls:
        certfile, keyfile = tls_files()
        cmd += ["--certfile", certfile, "--keyfile", keyfile]
    if workload.workers > 1:
        cmd += ["--workers", str(workload.workers)]
    if workload.metrics:
        cmd += ["--metrics"]
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop_server
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_affinity(pinning.server),  # never let the server start on the load core
    )
    sp = ServerProcess(server, workload, port, proc, log)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            out = sp.output()
            log.close()
            raise RuntimeError(f"{server} exited with status {proc.returncode} at startup:\n{out}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline:
                stop_server(sp)
                raise RuntimeError(
                    f"{server} did not open port {port} within {START_TIMEOUT}s"
                ) from None
            time.sleep(0.05)
    if pinning.server is not None:
        pin_process(proc.pid, pinning.server)
    return sp


_TLS_FILES: list[str] = []


def tls_files() -> tuple[str, str]:
    """A certificate and key for 127.0.0.1 (trustme, made once per run), for every server."""
    if not _TLS_FILES:
        import trustme

        directory = tempfile.mkdtemp(prefix="bench-tls-")
        issued = trustme.CA().issue_cert(HOST)
        certfile, keyfile = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
        issued.cert_chain_pems[0].write_to_path(certfile)
        issued.private_key_pem.write_to_path(keyfile)
        _TLS_FILES.extend([certfile, keyfile])
    return _TLS_FILES[0], _TLS_FILES[1]


def stop_server(sp: ServerProcess, timeout: float = 10.0) -> None:
    if sp.proc.poll() is None:
        sp.proc.send_signal(signal.SIGTERM)
        try:
            sp.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            sp.proc.kill()
            sp.proc.wait()
    sp.log.close()


@contextlib.contextmanager
def running(server: str, workload: Workload, pinning: Pinning) -> Iterator[ServerProcess]:
    sp = start_server(server, workload, pinning)
    try:
        yield sp
    finally:
        stop_server(sp)


# --- correctness check before measuring -------------------------------------------------------


def check_response(workload: Workload, port: int) -> None:
    """One request with the stdlib client; raise if the answer is not what the app sends."""
    conn: http.client.HTTPConnection
    if workload.tls:
        import ssl

        # The harness's own certificate: what is checked here is the answer, not the chain.
        context = ssl._create_unverified_context()
        conn = http.client.HTTPSConnection(HOST, port, timeout=10, context=context)
    else:
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        if workload.body_bytes:
            body = b"a" * workload.body_bytes
            conn.request("POST", "/", body=body)
            expected = body
        else:
            conn.request("GET", "/")
            expected = {
                "hello": apps.HELLO_BODY,
                "ws_echo": apps.HELLO_BODY,
                "big": apps.BIG_BODY,
                "stream": apps.STREAM_CHUNK * apps.STREAM_CHUNKS,
                "echo": b"",
            }[workload.app]
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    if response.status != 200 or data != expected:
        raise RuntimeError(
            f"unexpected response: status {response.status}, {len(data)} bytes "
            f"(expected 200, {len(expected)} bytes)"
        )


# --- load generators --------------------------------------------------------------------------


def wrk_command(workload: Workload, port: int, duration: float) -> list[str]:
    return [
        "wrk",
        "-t1",
        f"-c{workload.connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        f"{'https' if workload.tls else 'http'}://{HOST}:{port}/",
    ]


def run_wrk(workload: Workload, port: int, duration: float, pinning: Pinning) -> dict[str, Any]:
    if workload.workers > 1:
        pinning = Pinning(None, None)
    env = {**os.environ, "BENCH_BODY_BYTES": str(workload.body_bytes)}
    done = subprocess.run(
        wrk_command(workload, port, duration),
        env=env,
        capture_output=True,
        text=True,
        timeout=duration + 60,
        preexec_fn=_affinity(pinning.load),
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr.strip()}")
    return parse_wrk_output(done.stdout)


def idle_connections(sp: ServerProcess, count: int, settle: float = 1.0) -> dict[str, Any]:
    """Open ``count`` sockets that each complete one request and stay open; read server RSS."""
    request = f"GET / HTTP/1.1\r\nHost: {HOST}:{sp.port}\r\n\r\n".encode()
    base = memory_kib(sp.pid)
    socks: list[socket.socket] = []
    try:
        started = time.perf_counter()
        for _ in range(count):
            s = socket.create_connection((HOST, sp.port), timeout=10)
            socks.append(s)
            s.sendall(request)
            _read_response(s)
        opened_s = time.perf_counter() - started
        time.sleep(settle)
        mem = memory_kib(sp.pid)
        alive = sum(1 for s in socks if _is_open(s))
    finally:
        for s in socks:
            s.close()
    return {
        "rate": None,
        "p50_ms": None,
        "p99_ms": None,
        "rss_kib": mem["VmRSS"],
        "hwm_kib": mem["VmHWM"],
        "base_rss_kib": base["VmRSS"],
        "per_connection_kib": (mem["VmRSS"] - base["VmRSS"]) / count,
        "open_seconds": opened_s,
        "alive": alive,
        "error_count": count - alive,
    }


def _read_response(s: socket.socket) -> None:
    """Read one Content-Length response (the hello app's) from a blocking socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("server closed the connection before responding")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    length = int(match.group(1)) if match else 0
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("server closed the connection mid-body")
        body += chunk


def _is_open(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True  # nothing to read and not closed: still open
    except OSError:
        return False


WS_CLIENTS = ("raw", "websockets")


def run_ws(
    sp: ServerProcess, duration: float, client: str = "raw", window: int = 8
) -> dict[str, Any]:
    """WebSocket echo load: ``raw`` keeps ``window`` messages in flight per connection (server
    throughput); ``websockets`` is the library client, one message in flight (client-bound)."""
    if client == "raw":
        return ws_raw.echo_load(sp.port, sp.workload.connections, duration, window=window)
    if client == "websockets":
        return ws_client.run(ws_client.echo_load(sp.port, sp.workload.connections, duration))  # type: ignore[no-any-return]
    raise ValueError(f"unknown WebSocket client {client!r} (known: {', '.join(WS_CLIENTS)})")


def ws_support(server: str, workload: Workload, pinning: Pinning) -> str | None:
    """None when ``server`` echoes over WebSocket, else the reason it cannot."""
    try:
        with running(server, workload, pinning) as sp:
            return ws_client.run(ws_client.probe(sp.port))  # type: ignore[no-any-return]
    except RuntimeError as exc:
        return str(exc)
