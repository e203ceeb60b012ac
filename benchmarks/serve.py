"""Launch one server on one benchmark app (run as a subprocess by the harness).

    python -m benchmarks.serve --server appserver|uvicorn|granian|bare --app hello \
        --http httptools --loop uvloop --port 8001

appserver and uvicorn are started by their command lines, as they are deployed, with the same
flags (appserver's are uvicorn's names) and the app as an import string: no access log,
warning-level logging, lifespan off, 127.0.0.1 only (``appserver serve`` validates, then replaces
itself with a serving process that holds no pydantic; the process id stays). granian gets the
same in its own words (``--interface asgi``, one worker, one runtime thread, uvloop, HTTP/1
only, no access log). bare is benchmarks/bare.c, the ceiling row (benchmarks/bare.py). ``--cpu N`` pins the process to core N before the server starts (the
harness also re-pins every thread once the port answers).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from benchmarks.apps import APPS

SERVERS = ("appserver", "uvicorn", "granian", "bare")
HOST = "127.0.0.1"


def command_line(args: argparse.Namespace) -> list[str]:
    """The flags appserver and uvicorn both take (appserver's are uvicorn's names), after the
    app's import string: how each is deployed, by its command line."""
    flags = [f"benchmarks.apps:{args.app}", "--host", HOST, "--port", str(args.port)]
    flags += ["--http", args.http, "--loop", args.loop, "--no-access-log"]
    flags += ["--log-level", "warning", "--lifespan", "off"]
    if args.workers > 1:
        flags += ["--workers", str(args.workers)]
    if args.certfile:
        flags += ["--ssl-certfile", args.certfile, "--ssl-keyfile", args.keyfile]
    return flags


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve", description=__doc__)
    parser.add_argument("--server", choices=SERVERS, required=True)
    parser.add_argument("--app", choices=sorted(APPS), required=True)
    parser.add_argument("--http", choices=("httptools", "h11"), default="httptools")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this core")
    parser.add_argument("--certfile", default=None, help="serve HTTPS with this certificate")
    parser.add_argument("--keyfile", default=None, help="and this key")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument(
        "--metrics", action="store_true", help="appserver: count metrics (metrics.path)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    if args.server == "granian":
        run_granian(args)
        return
    if args.server == "bare":
        run_bare(args)
        return
    command = [sys.executable, "-m", args.server]
    if args.server == "appserver":
        command.append("serve")
        if args.metrics:
            command += ["--metrics-path", "/metrics"]
    # Each by its command line, as deployed: this process becomes the server (same pid, the
    # affinity set above kept).
    os.execv(sys.executable, [*command, *command_line(args)])


def run_bare(args: argparse.Namespace) -> None:
    """The C server of the ceiling row (benchmarks/bare.c), answering with the app's bytes,
    handed over in a memfd it opens by its /dev/fd path."""
    from benchmarks import bare

    binary = bare.build()
    fd = os.memfd_create("bare-response", 0)  # flags=0: no MFD_CLOEXEC, it survives execv
    with open(fd, "wb", closefd=False) as response:
        response.write(bare.response_bytes(args.app))
    os.execv(binary, [str(binary), str(args.port), f"/dev/fd/{fd}"])


def run_granian(args: argparse.Namespace) -> None:
    """granian as its users run it for speed: ASGI interface, uvloop, HTTP/1 (the workloads
    are HTTP/1.1), logging off; it takes the app as an import string."""
    from pathlib import Path

    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops

    if args.http != "httptools" or args.loop != "uvloop":
        raise SystemExit("granian has one HTTP implementation (Rust hyper) and runs on uvloop")
    options: dict[str, Any] = {}
    if args.certfile:
        options.update(ssl_cert=Path(args.certfile), ssl_key=Path(args.keyfile))
    Granian(
        f"benchmarks.apps:{args.app}",
        address=HOST,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=args.workers,
        runtime_threads=1,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=True,
        log_enabled=False,
        log_access=False,
        **options,
    ).serve()


if __name__ == "__main__":
    main()
