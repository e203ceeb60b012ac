"""The benchmark harness: its pure parts (no wrk, no timing) and the launcher serving a request."""

from __future__ import annotations

import importlib.util
import json

import httpx
import pytest
from benchmarks import runner, ws_raw
from benchmarks.report import (
    WrkParseError,
    format_table,
    paired_ratio,
    parse_wrk_output,
    percentile,
    summarize,
)
from benchmarks.workloads import WORKLOADS, select

WRK_JSON = (
    'BENCH_JSON {"requests":120000,"duration_us":10000000,"bytes":15000000,'
    '"errors":{"connect":0,"read":1,"write":0,"status":2,"timeout":0},'
    '"latency_us":{"mean":1200.50,"stdev":300.10,"max":9000,"p50":1100,"p75":1300,'
    '"p90":1500,"p99":2500}}'
)

WRK_TEXT = """\
Running 10s test @ http://127.0.0.1:8000/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20ms  300.10us   9.00ms   83.59%
    Req/Sec    12.00k     2.98k   19.82k    80.00%
  Latency Distribution
     50%  850.00us
     75%    1.43ms
     90%    2.91ms
     99%    1.05s
  120000 requests in 10.00s, 14.31MB read
  Socket errors: connect 0, read 3, write 0, timeout 4
  Non-2xx or 3xx responses: 5
Requests/sec:  12000.50
Transfer/sec:      1.43MB
"""


def test_parse_wrk_json_line_wins_over_text() -> None:
    parsed = parse_wrk_output(WRK_TEXT + WRK_JSON + "\n")
    assert parsed["requests"] == 120000
    assert parsed["rate"] == pytest.approx(12000.0)
    assert parsed["p50_ms"] == pytest.approx(1.1)
    assert parsed["p99_ms"] == pytest.approx(2.5)
    assert parsed["errors"]["status"] == 2
    assert parsed["error_count"] == 3


def test_parse_wrk_text_fallback_units_and_errors() -> None:
    parsed = parse_wrk_output(WRK_TEXT)
    assert parsed["rate"] == pytest.approx(12000.5)
    assert parsed["p50_ms"] == pytest.approx(0.85)
    assert parsed["p99_ms"] == pytest.approx(1050.0)
    assert parsed["requests"] == 120000
    assert parsed["duration_s"] == pytest.approx(10.0)
    assert parsed["errors"] == {"connect": 0, "read": 3, "write": 0, "status": 5, "timeout": 4}
    assert parsed["error_count"] == 12


@pytest.mark.parametrize(
    "text",
    ["", "wrk: connection refused\n", "Requests/sec: 100\n", "BENCH_JSON {not json\n"],
)
def test_parse_wrk_rejects_incomplete_output(text: str) -> None:
    with pytest.raises(WrkParseError):
        parse_wrk_output(text)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def _run(server: str, round_no: int, rate: float | None, **extra: object) -> dict[str, object]:
    return {
        "workload": "hello",
        "server": server,
        "round": round_no,
        "rate": rate,
        "p50_ms": 1.0,
        "p99_ms": 3.0,
        "rss_kib": 30 * 1024,
        "hwm_kib": 32 * 1024,
        "errors": 0,
        **extra,
    }


def test_paired_ratio_is_median_of_round_ratios() -> None:
    runs = [
        _run("appserver", 1, 110.0),
        _run("uvicorn", 1, 100.0),  # 1.10
        _run("appserver", 2, 300.0),
        _run("uvicorn", 2, 100.0),  # 3.00 (outlier)
        _run("appserver", 3, 120.0),
        _run("uvicorn", 3, 100.0),  # 1.20
    ]
    assert paired_ratio(runs, "rate") == pytest.approx(1.2)
    # A round where one side failed (no rate) is left out, not counted as zero.
    runs.append(_run("appserver", 4, None))
    runs.append(_run("uvicorn", 4, 100.0))
    assert paired_ratio(runs, "rate") == pytest.approx(1.2)
    assert paired_ratio([_run("appserver", 1, 1.0), _run("uvicorn", 1, 0.0)], "rate") is None


def test_summarize_and_table() -> None:
    hello = {"name": "hello", "kind": "wrk", "metric": "req/s", "description": "d"}
    idle = {"name": "idle-1000", "kind": "idle", "metric": "RSS"}
    ws = {"name": "ws-echo", "kind": "ws", "metric": "msg/s"}
    runs = [
        _run("appserver", 1, 22000.0),
        _run("uvicorn", 1, 20000.0, errors=7),
        {**_run("appserver", 1, None, rss_kib=45 * 1024), "workload": "idle-1000"},
        {**_run("uvicorn", 1, None, rss_kib=50 * 1024), "workload": "idle-1000"},
        {"workload": "ws-echo", "server": "appserver", "round": 0, "skipped": "no ws"},
        {"workload": "ws-echo", "server": "uvicorn", "round": 0, "skipped": "no ws"},
    ]
    summaries = [summarize(w, runs) for w in (hello, idle, ws)]
    assert summaries[0]["ratio"] == pytest.approx(1.1)
    assert summaries[0]["servers"]["appserver"]["rate"] == 22000.0
    assert summaries[0]["servers"]["uvicorn"]["errors"] == 7
    assert summaries[1]["ratio"] == pytest.approx(0.9)  # RSS: lower is better
    assert summaries[2]["skipped"] == "no ws" and summaries[2]["ratio"] is None
    json.dumps(summaries)  # goes into the results file as is

    table = format_table(summaries)
    lines = table.splitlines()
    assert lines[0].split() == [
        "workload",
        "server",
        "rate",
        "p50",
        "ms",
        "p99",
        "ms",
        "peak",
        "RSS",
        "vs",
        "uvicorn",
        "vs",
        "granian",
    ]
    hello_row = next(line for line in lines if line.startswith("hello"))
    assert "appserver" in hello_row and "22,000 req/s" in hello_row and "1.10x req/s" in hello_row
    assert "32.0 MiB" in hello_row
    assert any("uvicorn" in line and "20,000 req/s !" in line for line in lines)
    assert any(line.startswith("idle-1000") and "0.90x RSS" in line for line in lines)
    assert any(line.startswith("ws-echo") and "(skipped)" in line for line in lines)
    assert "ws-echo: skipped: no ws" in table
    assert "hello: uvicorn: 7 errors" in table


def test_select_workloads() -> None:
    assert select(None) == list(WORKLOADS)
    assert [w.name for w in select(["echo-1k-h11", "hello"])] == ["hello", "echo-1k-h11"]
    assert {w.name for w in select(["hello*"])} == {
        "hello",
        "hello-1conn",
        "hello-tls",
        "hello-2w",
        "hello-metrics",
        "hello-h11",
    }
    with pytest.raises(ValueError, match="unknown workload"):
        select(["nope"])


@pytest.mark.timeout(30)
@pytest.mark.parametrize("server", ["appserver", "uvicorn"])
def test_launcher_serves_a_request(server: str) -> None:
    if server == "uvicorn" and importlib.util.find_spec("uvicorn") is None:
        pytest.skip("uvicorn is only in the bench extra (pip install -e '.[bench]')")
    workload = select(["hello"])[0]
    with runner.running(server, workload, runner.Pinning()) as sp:
        response = httpx.get(f"http://127.0.0.1:{sp.port}/", timeout=10)
        mem = runner.memory_kib(sp.pid)
    assert response.status_code == 200
    assert response.text == "Hello, world!"
    assert mem["VmHWM"] >= mem["VmRSS"] > 0
    assert sp.proc.returncode is not None  # stopped


def test_ws_raw_frames_round_trip() -> None:
    payload = b"0123456789abcdef"
    masked = ws_raw.build_frame(payload, ws_raw.OP_TEXT, mask=b"\x01\x02\x03\x04")
    assert masked[:2] == b"\x81\x90"  # FIN + text; mask bit + length 16
    assert masked[2:6] == b"\x01\x02\x03\x04"
    assert masked[6] == payload[0] ^ 0x01
    plain = ws_raw.build_frame(payload, ws_raw.OP_BINARY)
    assert plain == b"\x82\x10" + payload
    assert len(ws_raw.build_frame(b"x" * 200)) == 4 + 200  # 16-bit extended length

    stream = plain + masked + ws_raw.build_frame(b"x" * 300) + plain[:5]
    frames, used = ws_raw.parse_frames(stream)
    assert frames == [
        (ws_raw.OP_BINARY, payload),
        (ws_raw.OP_TEXT, payload),
        (ws_raw.OP_TEXT, b"x" * 300),
    ]
    assert used == len(stream) - 5  # the partial frame is left for later
    assert ws_raw.parse_frames(b"\x81")[1] == 0
    with pytest.raises(ws_raw.ProtocolError, match="fragmented"):
        ws_raw.parse_frames(b"\x01\x01a")


def test_ws_raw_handshake_helpers() -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3
    assert ws_raw.accept_key(key) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    request = ws_raw.handshake_request("127.0.0.1", 8000, key)
    assert request.startswith(b"GET / HTTP/1.1\r\n") and request.endswith(b"\r\n\r\n")
    assert b"Sec-WebSocket-Key: " + key.encode() in request
    assert b"Extensions" not in request
    good = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    )
    ws_raw.check_handshake_response(good, key)
    with pytest.raises(ws_raw.ProtocolError, match="Accept"):
        ws_raw.check_handshake_response(good.replace(b"s3pP", b"XXXX"), key)
    with pytest.raises(ws_raw.ProtocolError, match="refused"):
        ws_raw.check_handshake_response(b"HTTP/1.1 403 Forbidden", key)
    with pytest.raises(ws_raw.ProtocolError, match="extension"):
        ws_raw.check_handshake_response(good + b"\r\nSec-WebSocket-Extensions: x", key)


def test_ws_raw_weighted_percentile() -> None:
    samples = [(3.0, 1), (1.0, 8), (2.0, 1)]
    assert ws_raw.weighted_percentile(samples, 50) == 1.0
    assert ws_raw.weighted_percentile(samples, 90) == 2.0
    assert ws_raw.weighted_percentile(samples, 99) == 3.0


@pytest.mark.parametrize("app", ["hello", "echo"])
@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_inprocess_loop_gets_a_whole_200_for_every_request(
    app: str, http: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The profiling loop measures real answers: one complete 200 response per request."""
    import uvloop
    from benchmarks import apps, inprocess

    written: list[bytes] = []
    count = inprocess.CountingTransport.write

    def write(self: inprocess.CountingTransport, data: bytes) -> None:
        written.append(bytes(data))
        count(self, data)

    monkeypatch.setattr(inprocess.CountingTransport, "write", write)
    assert uvloop.run(inprocess.measure(128, app, http)) > 0
    body = apps.HELLO_BODY if app == "hello" else b"e" * 1024
    assert len(written) == 128
    for response in written:
        head, _, rest = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and rest == body
        assert b"\r\nserver: appserver\r\n" in head and b"\r\ndate: " in head
