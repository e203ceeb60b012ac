"""``python -m benchmarks``: appserver against uvicorn and granian, interleaved, one table.

Each run starts a fresh server process (``python -m benchmarks.serve``), checks one response,
warms up, measures, reads the server's VmRSS/VmHWM and stops it. Rounds interleave the servers
(appserver, uvicorn, granian, appserver, ...) so drift on the machine hits all alike. granian
is optional: without it (or on a workload it cannot run, such as the h11 ones) its rows say
why they were skipped and the ratios to uvicorn stand alone.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import bare, runner
from benchmarks.report import BARE, PEERS, SERVER_A, SERVERS, format_table, summarize
from benchmarks.workloads import WORKLOADS, Workload, select

RESULTS_DIR = Path(__file__).resolve().parent / "results"
WRK_MISSING = """\
error: wrk (the HTTP load generator) is not installed or not on PATH.
Install the system package:
    Debian/Ubuntu:  sudo apt-get install wrk
    Fedora:         sudo dnf install wrk
    macOS:          brew install wrk
then run `make bench` again (or pick non-wrk workloads with --workloads idle-1000)."""
UVICORN_MISSING = """\
error: uvicorn is not installed; it is the benchmark-only dependency.
Install it with `pip install -e '.[bench]'` (`make bench` does this for you)."""
GRANIAN_MISSING = "granian is not installed (pip install -e '.[bench]'): its rows are skipped"


def peer_skip(server: str, workload: Workload, granian: bool) -> str | None:
    """Why ``server`` does not run ``workload`` (None: it does)."""
    if server != "granian":
        return None
    if not granian:
        return "not installed (pip install -e '.[bench]')"
    if workload.http != "httptools" or workload.loop != "uvloop":
        return "no h11/asyncio variant (granian has one HTTP implementation)"
    if workload.metrics:
        return "appserver-only workload"
    return None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    names = ", ".join(w.name for w in WORKLOADS)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark appserver against uvicorn on the same ASGI apps with wrk.",
        epilog=f"workloads: {names}",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds per measured run (default 10; --quick: 3)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds of discarded load before each run (default 2; --quick: 1)",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds (default 3; --quick: 1)"
    )
    parser.add_argument(
        "--workloads",
        nargs="+",
        metavar="NAME",
        default=None,
        help="only these workloads (a trailing * matches a prefix, e.g. 'hello*')",
    )
    parser.add_argument(
        "--quick", action="store_true", help="short runs for a smoke test (numbers are rough)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="write results here (default: benchmarks/results/bench-<timestamp>.json)",
    )
    parser.add_argument(
        "--ws-client",
        choices=runner.WS_CLIENTS,
        default="raw",
        help="ws load generator: raw (our socket client, W in flight; default) or websockets "
        "(the library's asyncio client, one in flight; the client is the bottleneck)",
    )
    parser.add_argument(
        "--ws-window",
        type=int,
        default=8,
        metavar="W",
        help="messages in flight per WebSocket connection with --ws-client raw (default 8)",
    )
    parser.add_argument(
        "--bare",
        action="store_true",
        help="add the ceiling row: benchmarks/bare.c (canned bytes from C, no Python; built "
        "with cc) on the bodiless plain-HTTP workloads, its ratio to each peer the most any "
        "server could reach on this machine",
    )
    parser.add_argument(
        "--max-steal",
        type=float,
        default=5.0,
        metavar="PCT",
        help="measure a run again when the hypervisor took more than PCT%% of the CPU time "
        "during it (default 5; the discarded runs stay in the JSON)",
    )
    parser.add_argument(
        "--steal-retries",
        type=int,
        default=2,
        metavar="N",
        help="at most N repeats of a run for steal (default 2; 0: keep every first run)",
    )
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    args = parser.parse_args(argv)
    defaults = (3.0, 1.0, 1) if args.quick else (10.0, 2.0, 3)
    if args.duration is None:
        args.duration = defaults[0]
    if args.warmup is None:
        args.warmup = defaults[1]
    if args.rounds is None:
        args.rounds = defaults[2]
    if args.duration < 1 or args.rounds < 1 or args.warmup < 0 or args.ws_window < 1:
        parser.error("--duration must be >= 1, --rounds >= 1, --warmup >= 0, --ws-window >= 1")
    if args.max_steal < 0 or args.steal_retries < 0:
        parser.error("--max-steal and --steal-retries must be >= 0")
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in ("appserver", "uvicorn", "granian", "httptools", "uvloop", "h11", "websockets"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    try:
        wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        out["wrk"] = (wrk.stdout or wrk.stderr).splitlines()[0].strip()
    except (OSError, IndexError):
        out["wrk"] = None
    return out


def git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=runner.ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def run_once(
    workload: Workload,
    server: str,
    round_no: int,
    args: argparse.Namespace,
    pinning: runner.Pinning,
) -> dict[str, Any]:
    """One fresh server process, one measurement, or its failure recorded (the harness keeps
    going; the exit status says it)."""
    result: dict[str, Any] = {"workload": workload.name, "server": server, "round": round_no}
    try:
        measured = measure_once(workload, server, args, pinning)
    except Exception as exc:
        return {**result, "failed": str(exc)}
    result.update(measured)
    result["errors"] = measured.get("error_count", 0)
    return result


def measure_once(
    workload: Workload, server: str, args: argparse.Namespace, pinning: runner.Pinning
) -> dict[str, Any]:
    """The numbers of one fresh server process, and the steal while a rate was measured."""
    with runner.running(server, workload, pinning) as sp:
        before = None  # idle: an RSS, which steal does not move
        if workload.kind == "ws":
            if args.warmup:
                runner.run_ws(sp, args.warmup, args.ws_client, args.ws_window)
            before = runner.cpu_times()
            measured = runner.run_ws(sp, args.duration, args.ws_client, args.ws_window)
        elif workload.kind == "idle":
            runner.check_response(workload, sp.port)
            measured = runner.idle_connections(sp, workload.connections)
        else:
            runner.check_response(workload, sp.port)
            if args.warmup:
                runner.run_wrk(workload, sp.port, args.warmup, pinning)
            before = runner.cpu_times()
            measured = runner.run_wrk(workload, sp.port, args.duration, pinning)
        if before is not None:
            measured["steal_pct"] = runner.steal_pct(before, runner.cpu_times())
        if "hwm_kib" not in measured:
            mem = runner.memory_kib(sp.pid)
            measured["rss_kib"], measured["hwm_kib"] = mem["VmRSS"], mem["VmHWM"]
    return measured


def retry_stolen(
    attempt: Callable[[], dict[str, Any]], max_steal: float, retries: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``attempt()`` until a run's steal is at most ``max_steal`` percent, at most ``retries``
    times more: the kept run and the runs passed over. A run measured while a neighbour had
    the cores is the neighbour's number, not the server's; the last try is kept either way
    (the table notes its steal)."""
    passed_over: list[dict[str, Any]] = []
    while True:
        result = attempt()
        steal = result.get("steal_pct")
        if steal is None or steal <= max_steal or len(passed_over) == retries:
            result["attempts"] = len(passed_over) + 1
            return result, passed_over
        passed_over.append(result)


def describe_run(r: dict[str, Any]) -> str:
    if r.get("skipped"):
        return f"skipped: {r['skipped']}"
    if r.get("failed"):
        return f"FAILED: {r['failed']}"
    parts = []
    if r.get("rate") is not None:
        parts.append(f"{r['rate']:,.0f}/s")
    if r.get("p50_ms") is not None:
        parts.append(f"p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms")
    parts.append(f"RSS {r['rss_kib'] / 1024:.1f} MiB peak {r['hwm_kib'] / 1024:.1f} MiB")
    if r.get("steal_pct"):
        parts.append(f"steal {r['steal_pct']:.0f}%")
    if r.get("errors"):
        parts.append(f"{r['errors']} errors")
    return ", ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for w in WORKLOADS:
            print(f"{w.name:14} {w.http}+{w.loop:8} {w.description}")
        return 0
    try:
        workloads = select(args.workloads)
    except ValueError as exc:
        log(f"error: {exc}")
        return 2
    if any(w.kind == "wrk" for w in workloads) and shutil.which("wrk") is None:
        log(WRK_MISSING)
        return 2
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        log(UVICORN_MISSING)
        return 2

    try:
        import granian  # noqa: F401

        have_granian = True
    except ImportError:
        have_granian = False
        log(f"benchmarks: {GRANIAN_MISSING}")

    bare_skip = None
    if args.bare:
        try:
            bare.build()
        except RuntimeError as exc:
            bare_skip = str(exc)
            log(f"benchmarks: no ceiling row: {exc}")

    pinning = runner.Pinning.detect()
    if pinning.load is not None:
        os.sched_setaffinity(0, {pinning.load})  # the harness is a load generator too (ws, idle)
    fd_limit = runner.raise_fd_limit()
    servers = sum(1 for s in SERVERS if s != BARE or args.bare)
    log(
        f"benchmarks: {len(workloads)} workloads x {args.rounds} rounds x {servers} servers, {args.duration:g}s runs + {args.warmup:g}s warmup"
    )
    log(f"benchmarks: {pinning.describe()}")

    runs: list[dict[str, Any]] = []
    active: list[Workload] = []
    for w in workloads:
        if w.kind == "idle" and w.connections + 64 > fd_limit:
            reason = f"needs {w.connections + 64} file descriptors, limit is {fd_limit}"
        elif w.needs_ws:
            reason = "; ".join(
                f"{server} has no WebSocket support ({why})"
                for server in (SERVER_A, "uvicorn")
                if (why := runner.ws_support(server, w, pinning)) is not None
            )
        else:
            reason = ""
        if reason:
            log(f"benchmarks: skipping {w.name}: {reason}")
            runs.extend(
                {"workload": w.name, "server": s, "round": 0, "skipped": reason}
                for s in SERVERS
                if s != BARE or args.bare
            )
        else:
            active.append(w)

    plan: dict[str, list[str]] = {}
    for w in active:
        plan[w.name] = [SERVER_A]
        for peer in PEERS:
            why = peer_skip(peer, w, have_granian)
            if why is None and w.needs_ws and peer != "uvicorn":
                ws_why = runner.ws_support(peer, w, pinning)
                why = None if ws_why is None else f"no WebSocket support ({ws_why})"
            if why is None:
                plan[w.name].append(peer)
            else:
                runs.append({"workload": w.name, "server": peer, "round": 0, "skipped": why})
        if args.bare:
            why = bare_skip or bare.skip_reason(w)
            if why is None:
                plan[w.name].append(BARE)
            else:
                runs.append({"workload": w.name, "server": BARE, "round": 0, "skipped": why})

    started = time.monotonic()
    discarded: list[dict[str, Any]] = []
    for round_no in range(1, args.rounds + 1):
        for w in active:
            for server in plan[w.name]:
                prefix = f"[round {round_no}/{args.rounds}] {w.name:12} {server:9}"
                attempt = functools.partial(run_once, w, server, round_no, args, pinning)
                result, passed_over = retry_stolen(attempt, args.max_steal, args.steal_retries)
                for stolen in passed_over:
                    log(f"{prefix} {describe_run(stolen)} (steal above {args.max_steal:g}%: again)")
                discarded.extend(passed_over)
                runs.append(result)
                log(f"{prefix} {describe_run(result)}")

    summaries = [summarize({**asdict(w), "metric": w.metric}, runs) for w in workloads]
    table = format_table(summaries)
    print()
    print(table)

    path = args.json or RESULTS_DIR / f"bench-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "elapsed_s": round(time.monotonic() - started, 1),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "pinning": asdict(pinning),
        },
        "git_commit": git_commit(),
        "versions": versions(),
        "workloads": [asdict(w) for w in workloads],
        "summary": summaries,
        "runs": runs,
        "discarded": discarded,
        "table": table,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nresults written to {path}")
    failed = [r for r in runs if r.get("failed")]
    if failed:
        log(f"benchmarks: {len(failed)} run(s) failed (see above and the JSON)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
