"""The pure parts of the harness: parse wrk output, summarise rounds, format the table.

No processes, sockets or clocks here, so tests can cover all of it quickly.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

SERVER_A = "appserver"
SERVER_B = "uvicorn"
# The peers appserver is compared with, each in the same rounds: uvicorn (its baseline) and
# granian (Rust, the server people pick for speed).
PEERS = (SERVER_B, "granian")
# The ceiling row (--bare): benchmarks/bare.c writes canned bytes, no Python; its ratio to a peer
# is what a server doing no work shows against that peer on the machine of the run.
BARE = "bare"
SERVERS = (SERVER_A, *PEERS, BARE)
# Above this share of CPU time taken by the hypervisor during a workload's runs, the table says
# so: the ratios of such a run move with the neighbours, not with the code.
STEAL_NOTE_PCT = 5.0

JSON_MARKER = "BENCH_JSON "
_UNITS_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


class WrkParseError(ValueError):
    """wrk's output had neither our JSON line nor the numbers we need."""


def parse_wrk_output(text: str) -> dict[str, Any]:
    """Totals, req/s and latency (ms) from one wrk run.

    Prefers the ``BENCH_JSON`` line printed by wrk_report.lua's ``done()`` hook; falls back to
    wrk's human-readable text (run with ``--latency``) when the line is missing.
    """
    for line in reversed(text.splitlines()):
        if line.startswith(JSON_MARKER):
            try:
                data = json.loads(line[len(JSON_MARKER) :])
            except json.JSONDecodeError as exc:
                raise WrkParseError(f"bad BENCH_JSON line: {exc}") from None
            return _from_json(data)
    return _from_text(text)


def _from_json(data: dict[str, Any]) -> dict[str, Any]:
    duration_s = data["duration_us"] / 1e6
    latency = data["latency_us"]
    errors = data["errors"]
    return {
        "requests": int(data["requests"]),
        "duration_s": duration_s,
        "bytes": int(data["bytes"]),
        "rate": data["requests"] / duration_s if duration_s > 0 else 0.0,
        "p50_ms": latency["p50"] / 1000.0,
        "p99_ms": latency["p99"] / 1000.0,
        "mean_ms": latency["mean"] / 1000.0,
        "max_ms": latency["max"] / 1000.0,
        "errors": {k: int(v) for k, v in errors.items()},
        "error_count": sum(int(v) for v in errors.values()),
    }


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_TO_MS[unit]


def _from_text(text: str) -> dict[str, Any]:
    rps = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if rps is None:
        raise WrkParseError("no 'Requests/sec' and no BENCH_JSON line in wrk output")
    pct = {
        m.group(1): _to_ms(m.group(2), m.group(3))
        for m in re.finditer(r"^\s*(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
    }
    if "50" not in pct or "99" not in pct:
        raise WrkParseError("no latency distribution in wrk output (run wrk with --latency)")
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        for key, value in zip(("connect", "read", "write", "timeout"), sock.groups(), strict=True):
            errors[key] = int(value)
    status = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if status:
        errors["status"] = int(status.group(1))
    return {
        "requests": int(total.group(1)) if total else 0,
        "duration_s": _to_ms(total.group(2), total.group(3)) / 1000.0 if total else 0.0,
        "bytes": 0,
        "rate": float(rps.group(1)),
        "p50_ms": pct["50"],
        "p99_ms": pct["99"],
        "mean_ms": None,
        "max_ms": None,
        "errors": errors,
        "error_count": sum(errors.values()),
    }


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sequence."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = max(1, -(-len(sorted_values) * pct // 100))  # ceil(n * pct / 100), at least 1
    return sorted_values[int(rank) - 1]


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def paired_ratio(
    runs: Sequence[dict[str, Any]], key: str, peer: str = SERVER_B, of: str = SERVER_A
) -> float | None:
    """Median over rounds of ``of``[key] / peer[key] within the same round (``of``: appserver,
    or bare for the ceiling)."""
    by_round: dict[int, dict[str, Any]] = {}
    for run in runs:
        if run.get("skipped"):
            continue
        by_round.setdefault(run["round"], {})[run["server"]] = run.get(key)
    return median(ratio(pair.get(of), pair.get(peer)) for _, pair in sorted(by_round.items()))


def summarize(workload: dict[str, Any], runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median of each number over the rounds, per server, and the paired ratio.

    ``workload`` needs ``name``, ``metric`` and ``kind``; each run has ``server``, ``round`` and
    the measured ``rate`` (req/s or msg/s; None for idle), ``p50_ms``, ``p99_ms``, ``hwm_kib``
    (VmHWM: peak RSS), ``rss_kib`` (VmRSS when measured), ``errors`` (a count), ``steal_pct``
    (the hypervisor's share of the CPU time while it ran) or ``skipped``. The ratio compares
    ``rate`` (higher is better), or ``rss_kib`` for the idle kind (lower is better); the
    ceiling is the bare server's ratio to each peer, when it ran.
    """
    mine = [r for r in runs if r["workload"] == workload["name"]]
    # The workload is skipped when appserver's runs are; a peer may be skipped on its own
    # (granian has no h11 parser, or is not installed).
    skipped = next(
        (r["skipped"] for r in mine if r.get("skipped") and r["server"] == SERVER_A), None
    )
    servers: dict[str, Any] = {}
    for server in SERVERS:
        done = [r for r in mine if r["server"] == server and not r.get("skipped")]
        server_skipped = next(
            (r["skipped"] for r in mine if r["server"] == server and r.get("skipped")), None
        )
        if not done and server_skipped is None and server != SERVER_A:
            continue  # not run at all (an older results file, or a harness test)
        servers[server] = {
            "skipped": server_skipped,
            "runs": len(done),
            "rate": median(r.get("rate") for r in done),
            "p50_ms": median(r.get("p50_ms") for r in done),
            "p99_ms": median(r.get("p99_ms") for r in done),
            "hwm_kib": median(r.get("hwm_kib") for r in done),
            "rss_kib": median(r.get("rss_kib") for r in done),
            "errors": sum(int(r.get("errors") or 0) for r in done),
            "per_connection_kib": median(r.get("per_connection_kib") for r in done),
        }
    key = "rss_kib" if workload["kind"] == "idle" else "rate"
    ratios = {
        peer: None if skipped or peer not in servers else paired_ratio(mine, key, peer)
        for peer in PEERS
    }
    ran_bare = BARE in servers and not servers[BARE]["skipped"] and not skipped
    ceiling = {peer: paired_ratio(mine, key, peer, of=BARE) for peer in PEERS} if ran_bare else {}
    return {
        "workload": workload["name"],
        "kind": workload["kind"],
        "metric": workload["metric"],
        "description": workload.get("description", ""),
        "skipped": skipped,
        "servers": servers,
        "ratio_of": key,
        "ratio": ratios[SERVER_B],  # to uvicorn
        "ratios": ratios,
        "ceiling": ceiling,
        "steal_pct": median(r.get("steal_pct") for r in mine if not r.get("skipped")),
    }


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _mib(kib: float | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def format_table(summaries: Sequence[dict[str, Any]]) -> str:
    """A row per server and workload (appserver first); the ratios sit on appserver's row.

    Each ratio = appserver / that peer of the workload's metric, median of the per-round
    ratios. For req/s and msg/s higher is better; for the idle workload the metric is RSS with
    the connections open, where lower is better.
    """
    header = (
        "workload", "server", "rate", "p50 ms", "p99 ms", "peak RSS",
        *(f"vs {peer}" for peer in PEERS),
    )  # fmt: skip
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    for s in summaries:
        if s["skipped"]:
            rows.append((s["workload"], "(skipped)", "-", "-", "-", "-", *("-" for _ in PEERS)))
            notes.append(f"{s['workload']}: skipped: {s['skipped']}")
            continue
        # A workload bare cannot answer (a body, TLS, workers) has no ceiling row; the reason
        # is in the results file.
        shown = [
            server
            for server in SERVERS
            if server in s["servers"] and not (server == BARE and s["servers"][server]["skipped"])
        ]
        for i, server in enumerate(shown):
            data = s["servers"][server]
            if data.get("skipped"):
                rows.append(("", server, "(skipped)", "-", "-", "-", *("" for _ in PEERS)))
                notes.append(f"{s['workload']}: {server} skipped: {data['skipped']}")
                continue
            if s["kind"] == "idle":
                rate = f"RSS {_mib(data['rss_kib'])}"
                if data["per_connection_kib"] is not None:
                    rate += f" ({data['per_connection_kib']:+.1f} KiB/conn)"
            else:
                rate = f"{_num(data['rate'], ',.0f')} {s['metric']}"
            if data["errors"]:
                rate += " !"
                notes.append(f"{s['workload']}: {server}: {data['errors']} errors (! above)")
            cells: list[str] = ["" for _ in PEERS]
            if i == 0 or server == BARE:
                if server == BARE:
                    ratios = s.get("ceiling") or {}
                else:
                    ratios = s.get("ratios") or {SERVER_B: s["ratio"]}
                cells = [
                    "-" if ratios.get(peer) is None else f"{ratios[peer]:.2f}x {s['metric']}"
                    for peer in PEERS
                ]
            rows.append(
                (
                    s["workload"] if i == 0 else "",
                    server,
                    rate,
                    _num(data["p50_ms"], ".2f"),
                    _num(data["p99_ms"], ".2f"),
                    _mib(data["hwm_kib"]),
                    *cells,
                )
            )
        steal = s.get("steal_pct")
        if steal is not None and steal > STEAL_NOTE_PCT:
            notes.append(
                f"{s['workload']}: the hypervisor took {steal:.0f}% of the CPU time during its "
                "runs (median): its ratios move with the machine's neighbours"
            )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    right = {2, 3, 4, 5}

    def line(cells: Sequence[str]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    text = [line(header), line(["-" * w for w in widths])]
    text.extend(line(r) for r in rows)
    text.append("")
    text.append(
        "vs X = appserver / X, median of per-round ratios; "
        "req/s, msg/s: higher is better; RSS (idle connections): lower is better."
    )
    if any(v is not None for s in summaries for v in (s.get("ceiling") or {}).values()):
        text.append(
            "bare: benchmarks/bare.c, canned bytes from C with no Python; on its row, vs X = "
            "bare / X, what a server doing no work reaches against X on this machine (within noise)."
        )
    text.extend(notes)
    return "\n".join(text)
