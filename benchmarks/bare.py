"""The ceiling row: ``bare.c`` built with the system's C compiler, answering with canned bytes.

A server that does nothing but read a request head and write a fixed response shows what the
kernel, the loopback and wrk allow on this machine; its ratio to uvicorn on a workload is the
most a server could reach there (``--bare``): a reference measured in the same rounds, so
within the noise a server can come out level with it or just above. It runs only on workloads whose requests have
no body and whose response is the same every time (hello, big, stream), plain HTTP, one process.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from email.utils import formatdate
from pathlib import Path
from typing import Any

from benchmarks.apps import APPS
from benchmarks.workloads import Workload

SOURCE = Path(__file__).resolve().parent / "bare.c"
STATUS_LINE = b"HTTP/1.1 200 OK\r\n"


def skip_reason(workload: Workload) -> str | None:
    """Why the bare server does not run ``workload`` (None: it does)."""
    if workload.kind != "wrk":
        return "bare answers HTTP requests from wrk only (no WebSocket, no idle count)"
    if workload.body_bytes:
        return "bare answers bodiless requests only"
    if workload.tls or workload.workers > 1 or workload.metrics:
        return "bare is plain HTTP, one process, no metrics"
    if workload.http != "httptools" or workload.loop != "uvloop":
        return "bare has no parser to vary (its ceiling is the httptools row's)"
    return None


def build() -> Path:
    """The compiled server, built once per source version into the temporary directory.

    Raises RuntimeError saying why when there is no compiler or the build fails.
    """
    source = SOURCE.read_bytes()
    # A directory of this user's own (0700): a binary someone else planted is never run.
    cache = Path(tempfile.gettempdir()) / f"appserver-bench-{os.getuid()}"
    cache.mkdir(mode=0o700, exist_ok=True)
    if cache.stat().st_uid != os.getuid() or cache.stat().st_mode & 0o077:
        raise RuntimeError(f"{cache} is not this user's own directory (0700)")
    binary = cache / f"bare-{hashlib.sha256(source).hexdigest()[:12]}"
    if binary.exists():
        return binary
    compiler = shlex.split(os.environ.get("CC", "")) or [shutil.which("cc") or "gcc"]
    partial = binary.with_suffix(f".{os.getpid()}.tmp")
    try:
        done = subprocess.run(
            [*compiler, "-O2", "-o", str(partial), str(SOURCE)],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise RuntimeError(f"no C compiler to build benchmarks/bare.c ({exc})") from None
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"building benchmarks/bare.c failed: {done.stderr.strip()[-500:]}")
    partial.replace(binary)  # atomic: a concurrent build never sees half a binary
    return binary


def response_bytes(app_name: str) -> bytes:
    """What the app answers to ``GET /``, encoded as appserver sends it (its date and server
    headers included, chunked when the app gives no Content-Length): the same bytes on the
    wire, written by C."""
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "http_version": "1.1"}
    asyncio.run(APPS[app_name](scope, receive, send))
    start, bodies = messages[0], [m.get("body", b"") for m in messages[1:]]
    headers = [(b"date", formatdate(usegmt=True).encode()), (b"server", b"bare")]
    headers += [(bytes(k), bytes(v)) for k, v in start["headers"]]
    chunked = not any(k.lower() == b"content-length" for k, _ in headers)
    if chunked:
        headers.append((b"transfer-encoding", b"chunked"))
        body = b"".join(b"%x\r\n%s\r\n" % (len(b), b) for b in bodies if b) + b"0\r\n\r\n"
    else:
        body = b"".join(bodies)
    head = STATUS_LINE + b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n"
    return head + body
