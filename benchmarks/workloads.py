"""What the harness measures. Add a workload by appending to WORKLOADS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# kind "wrk": HTTP load from wrk, metric req/s (higher is better)
# kind "idle": N raw keep-alive sockets that each complete one request and stay open,
#              metric server RSS (lower is better)
# kind "ws": WebSocket echo from our raw-socket client (benchmarks/ws_raw.py) keeping W messages
#            in flight per connection (--ws-window, default 8) so the server is the bottleneck;
#            --ws-client websockets uses the library client instead. Metric messages/s (higher
#            is better)
KINDS = ("wrk", "idle", "ws")


@dataclass(frozen=True)
class Workload:
    name: str
    kind: str
    app: str  # key of benchmarks.apps.APPS
    description: str
    http: str = "httptools"
    loop: str = "uvloop"
    connections: int = 64
    body_bytes: int = 0  # > 0: POST a body of this size (wrk kind)
    needs_ws: bool = False
    tls: bool = False  # serve HTTPS (both servers get the same certificate and key)
    # > 1: that many worker processes (both servers' `workers`); nothing is pinned then, the
    # workers and wrk share the cores.
    workers: int = 1
    # appserver with its metrics on (metrics.path): uvicorn has no metrics, so this workload's
    # ratio against hello's, in the same run, is what counting costs.
    metrics: bool = False

    @property
    def metric(self) -> str:
        return {"wrk": "req/s", "idle": "RSS", "ws": "msg/s"}[self.kind]

    @property
    def higher_is_better(self) -> bool:
        return self.kind != "idle"


WORKLOADS: tuple[Workload, ...] = (
    Workload("hello", "wrk", "hello", "13-byte text, 64 connections"),
    Workload("hello-1conn", "wrk", "hello", "13-byte text, 1 connection (latency)", connections=1),
    Workload("big-64k", "wrk", "big", "64 KiB response, 64 connections"),
    Workload("echo-1k", "wrk", "echo", "1 KiB POST echoed back, 64 connections", body_bytes=1024),
    Workload("stream-10", "wrk", "stream", "10 chunks of 1 KiB (chunked), 64 connections"),
    Workload(
        "hello-tls",
        "wrk",
        "hello",
        "hello over HTTPS (keep-alive, TLS 1.3), 64 connections",
        tls=True,
    ),
    Workload(
        "hello-2w",
        "wrk",
        "hello",
        "hello on 2 worker processes (unpinned: they share 2 cores with wrk)",
        workers=2,
    ),
    Workload(
        "hello-metrics",
        "wrk",
        "hello",
        "hello with appserver's Prometheus metrics on (uvicorn: none; compare with hello)",
        metrics=True,
    ),
    Workload("hello-h11", "wrk", "hello", "hello on h11+asyncio", http="h11", loop="asyncio"),
    Workload(
        "echo-1k-h11",
        "wrk",
        "echo",
        "1 KiB POST echo on h11+asyncio",
        http="h11",
        loop="asyncio",
        body_bytes=1024,
    ),
    Workload(
        "idle-1000",
        "idle",
        "hello",
        "1000 idle keep-alive connections after one request each",
        connections=1000,
    ),
    Workload(
        "ws-echo",
        "ws",
        "ws_echo",
        "WebSocket echo server throughput: 16-byte text, 16 connections x W=8 in flight (raw client)",
        connections=16,
        needs_ws=True,
    ),
)


def select(names: Sequence[str] | None) -> list[Workload]:
    """Workloads whose name matches one of ``names`` (exact, or a prefix ending in '*')."""
    if not names:
        return list(WORKLOADS)
    chosen: list[Workload] = []
    unknown = []
    for pattern in names:
        if pattern.endswith("*"):
            hits = [w for w in WORKLOADS if w.name.startswith(pattern[:-1])]
        else:
            hits = [w for w in WORKLOADS if w.name == pattern]
        if not hits:
            unknown.append(pattern)
        chosen.extend(w for w in hits if w not in chosen)
    if unknown:
        known = ", ".join(w.name for w in WORKLOADS)
        raise ValueError(f"unknown workload(s): {', '.join(unknown)} (known: {known})")
    return [w for w in WORKLOADS if w in chosen]  # keep the canonical order
