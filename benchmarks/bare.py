"""The ceiling row: ``bare.c`` built with the system's C compiler, answering with canned bytes.

A server that does nothing but read a request head and write a fixed response shows what the
kernel, the loopback and wrk allow on this machine; its ratio to uvicorn on a workload is the
most any server could reach there (``--bare``). It runs only on workloads whose requests have
no body and whose response is the same every time (hello, big, stream), plain HTTP, one process.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
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
    if workload.kind != "wrk" or workload.body_bytes:
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
    binary = (
        Path(tempfile.gettempdir())
        / f"appserver-bench-bare-{hashlib.sha256(source).hexdigest()[:12]}"
    )
    if binary.exists():
        return binary
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc, gcc or $CC) to build benchmarks/bare.c")
    partial = binary.with_suffix(f".{os.getpid()}.tmp")
    done = subprocess.run(
        [compiler, "-O2", "-o", str(partial), str(SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
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
