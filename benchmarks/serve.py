"""Launch one server on one benchmark app (run as a subprocess by the harness).

    python -m benchmarks.serve --server appserver|uvicorn|granian --app hello \
        --http httptools --loop uvloop --port 8001

appserver and uvicorn get the same keywords (appserver's are uvicorn's names): no access log,
warning-level logging, lifespan off, 127.0.0.1 only. granian gets the same in its own words
(``--interface asgi``, one worker, one runtime thread, uvloop, HTTP/1 only, no access log). ``--cpu N`` pins the process to core N before the server
starts (the harness also re-pins every thread once the port answers).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from benchmarks.apps import APPS

SERVERS = ("appserver", "uvicorn", "granian")
HOST = "127.0.0.1"


def server_kwargs(http: str, loop: str, port: int) -> dict[str, Any]:
    """Keywords passed unchanged to ``appserver.run`` and ``uvicorn.run``."""
    return {
        "host": HOST,
        "port": port,
        "http": http,
        "loop": loop,
        "access_log": False,
        "log_level": "warning",
        "lifespan": "off",
    }


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
    app: object = APPS[args.app]
    kwargs = server_kwargs(args.http, args.loop, args.port)
    if args.workers > 1:
        # uvicorn needs an import string to start workers; both get the same one.
        app = f"benchmarks.apps:{args.app}"
        kwargs["workers"] = args.workers
    if args.certfile:  # uvicorn's TLS keywords, which appserver takes too
        kwargs.update(ssl_certfile=args.certfile, ssl_keyfile=args.keyfile)
    if args.server == "granian":
        run_granian(args)
        return
    if args.server == "appserver":
        import appserver

        if args.metrics:
            kwargs["metrics_path"] = "/metrics"

        appserver.run(app, **kwargs)
    else:
        import uvicorn

        uvicorn.run(app, **kwargs)


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
