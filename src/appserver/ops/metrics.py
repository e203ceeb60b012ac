"""Prometheus metrics: counted in plain integers on the request path, rendered at scrape time.

Counting is a few dictionary and integer updates per response (no locks, no label lookups of
prometheus-client's on the hot path); gauges (in-flight requests, open connections) are not
counted at all but read off the server's connections when a scrape asks. prometheus-client
only renders the text exposition, from a snapshot: a plain, JSON-able dict.

With worker processes each worker writes its snapshot to a directory the supervisor made,
once a second and when it exits; whichever process answers a scrape adds its own live snapshot
to the others' files (prometheus-client's multiprocess mode has the same shape, with a file
per process). The supervisor folds the counters of a worker that exited into ``retired.json``
and drops its gauges, so totals never go backwards when a worker is replaced.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Seconds; Prometheus' client default buckets, which fit web request latencies.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Methods get their own label value; anything else is "other" (a client must not be able to
# create a time series per request by inventing methods).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"})

# Why a request was refused before or instead of the app, by the status it got.
REJECTION_REASONS: dict[int, str] = {
    400: "bad_request",
    408: "request_timeout",
    413: "content_too_large",
    414: "uri_too_long",
    431: "headers_too_large",
    501: "not_implemented",
    503: "concurrency",
    505: "http_version",
}

_FIRST_BUCKET = BUCKETS[0]
COUNTERS = ("bytes_received", "bytes_sent", "worker_restarts")
GAUGES = ("requests_in_flight", "connections_http", "connections_websocket")


class Metrics:
    """One process's counters."""

    __slots__ = (
        "buckets",
        "by_method",
        "bytes_received",
        "bytes_sent",
        "duration_sum",
        "rejections",
        "worker_restarts",
    )  # fmt: skip

    def __init__(self) -> None:
        # method -> counts by status // 100 (index 1..5; 0 and 6..9 for out-of-range codes):
        # a list per method, so counting a response builds no key.
        self.by_method: dict[str, list[int]] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.duration_sum = 0.0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.rejections: dict[str, int] = {}
        self.worker_restarts = 0

    def observe(self, method: str, status: int, seconds: float) -> None:
        """A response completed ``seconds`` after its request began.

        The request path's one call into metrics, so written for it: one dict lookup, two
        list updates, and no bisect for the common sub-5 ms response."""
        row = self.by_method.get(method)
        if row is None:
            row = self._row(method)
        row[status // 100 if status < 1000 else 0] += 1
        buckets = self.buckets
        buckets[0 if seconds <= _FIRST_BUCKET else bisect.bisect_left(BUCKETS, seconds)] += 1
        self.duration_sum += seconds

    def _row(self, method: str) -> list[int]:
        # Methods outside _METHODS share the row of "other" (bounded label values).
        name = method if method in _METHODS else "other"
        return self.by_method.setdefault(name, [0] * 10)

    def reject(self, status: int) -> None:
        reason = REJECTION_REASONS.get(status, str(status))
        self.rejections[reason] = self.rejections.get(reason, 0) + 1

    def snapshot(self, **gauges: int) -> dict[str, Any]:
        """The counters (and the ``gauges`` given) as plain data."""
        return {
            "requests": {
                f"{method} {klass}": n
                for method, row in self.by_method.items()
                for klass, n in enumerate(row)
                if n
            },
            "buckets": list(self.buckets),
            "duration_sum": self.duration_sum,
            "bytes_received": self.bytes_received,
            "bytes_sent": self.bytes_sent,
            "rejections": dict(self.rejections),
            "worker_restarts": self.worker_restarts,
            **{name: gauges.get(name, 0) for name in GAUGES},
        }


def merge(snapshots: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The sum of several processes' snapshots."""
    total = Metrics().snapshot()
    for snap in snapshots:
        for table in ("requests", "rejections"):
            for key, n in snap.get(table, {}).items():
                total[table][key] = total[table].get(key, 0) + n
        for i, n in enumerate(snap.get("buckets", ())[: len(total["buckets"])]):
            total["buckets"][i] += n
        total["duration_sum"] += snap.get("duration_sum", 0.0)
        for name in (*COUNTERS, *GAUGES):
            total[name] += snap.get(name, 0)
    return total


def render(snap: dict[str, Any]) -> tuple[bytes, bytes]:
    """The Prometheus text exposition of ``snap``, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    single_values = (
        (GaugeMetricFamily, "appserver_requests_in_flight", "Requests being answered now.",
         "requests_in_flight"),
        (CounterMetricFamily, "appserver_received_bytes",
         "Bytes read from HTTP clients (heads and bodies).", "bytes_received"),
        (CounterMetricFamily, "appserver_sent_bytes",
         "Bytes written to HTTP clients (heads and bodies).", "bytes_sent"),
        (CounterMetricFamily, "appserver_worker_restarts",
         "Worker processes replaced after they exited or hung.", "worker_restarts"),
    )  # fmt: skip
    families: list[Any] = []
    requests = CounterMetricFamily(
        "appserver_requests", "Responses completed, by method and status class.",
        labels=["method", "status"],
    )  # fmt: skip
    for key, n in sorted(snap["requests"].items()):
        method, _, klass = key.partition(" ")
        requests.add_metric([method, f"{klass}xx"], n)
    families.append(requests)
    cumulative, running = [], 0
    for bound, n in zip((*BUCKETS, float("inf")), snap["buckets"], strict=True):
        running += n
        cumulative.append((_bound(bound), running))
    families.append(
        HistogramMetricFamily(
            "appserver_request_duration_seconds",
            "Time from a request's head to the end of its response.",
            buckets=cumulative,
            sum_value=snap["duration_sum"],
        )
    )
    # The families of one plain value each: (kind, name, help, snapshot key).
    for kind, name, text, key in single_values:
        families.append(kind(name, text, value=snap[key]))
    connections = GaugeMetricFamily(
        "appserver_connections", "Open client connections, by protocol.", labels=["protocol"]
    )
    connections.add_metric(["http"], snap["connections_http"])
    connections.add_metric(["websocket"], snap["connections_websocket"])
    families.append(connections)
    rejections = CounterMetricFamily(
        "appserver_rejections",
        "Requests refused by the server itself, by reason (concurrency is limit_concurrency's "
        "503).",
        labels=["reason"],
    )
    for reason, n in sorted(snap["rejections"].items()):
        rejections.add_metric([reason], n)
    families.append(rejections)

    class _Snapshot:
        def collect(self) -> list[Any]:
            return families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot())
    return generate_latest(registry), CONTENT_TYPE_LATEST.encode()


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


class SnapshotDirectory:
    """Where the processes of one supervisor leave their snapshots for each other."""

    RETIRED = "retired.json"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def write(self, name: str, snap: dict[str, Any]) -> None:
        """Replace ``name``'s snapshot, atomically (a reader never sees half a file)."""
        target = self.path / f"{name}.json"
        temporary = self.path / f".{name}.json.tmp"
        with contextlib.suppress(OSError):
            temporary.write_text(json.dumps(snap), encoding="utf-8")
            os.replace(temporary, target)

    def read(self, *, skip: str | None = None) -> list[dict[str, Any]]:
        """Every snapshot in the directory but ``skip``'s, and but those already folded into
        retired.json (a worker's file outlives the fold by a moment: see retire())."""
        loaded: dict[str, dict[str, Any]] = {}
        for entry in self.path.glob("*.json"):
            name = entry.name.removesuffix(".json")
            if name == skip:
                continue
            with contextlib.suppress(OSError, ValueError):
                loaded[name] = json.loads(entry.read_text(encoding="utf-8"))
        folded = set(loaded.get(self.RETIRED.removesuffix(".json"), {}).get("folded", ()))
        return [snap for name, snap in loaded.items() if name not in folded]

    def retire(self, name: str) -> None:
        """``name`` exited: keep its counters (in retired.json), drop its gauges."""
        source = self.path / f"{name}.json"
        try:
            snap = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        retired = self.path / self.RETIRED
        try:
            previous = json.loads(retired.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = Metrics().snapshot()
        total = merge([previous, {**snap, **dict.fromkeys(GAUGES, 0)}])
        # The names folded in, so that a reader between this write and the unlink below
        # counts the worker once, not twice (a counter must never jump, or go back).
        total["folded"] = [*previous.get("folded", ()), name]
        self.write(self.RETIRED.removesuffix(".json"), total)
        with contextlib.suppress(OSError):
            source.unlink()
