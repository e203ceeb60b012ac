"""The benchmark harness: its pure parts (no wrk, no timing) and the launcher serving a request."""

from __future__ import annotations

import importlib.util
import json
import socket
import time
from collections.abc import Callable

import httpx
import pytest
from benchmarks import apps, bare, runner, ws_raw
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


def test_bare_row_carries_the_ceiling_and_steal_is_noted() -> None:
    hello = {"name": "hello", "kind": "wrk", "metric": "req/s"}
    echo = {"name": "echo-1k", "kind": "wrk", "metric": "req/s"}
    runs = [
        _run("appserver", 1, 22000.0, steal_pct=12.0),
        _run("uvicorn", 1, 20000.0, steal_pct=8.0),
        _run("bare", 1, 30000.0, steal_pct=10.0),
        _run("appserver", 2, 24000.0, steal_pct=1.0),
        _run("uvicorn", 2, 20000.0, steal_pct=30.0),
        _run("bare", 2, 34000.0, steal_pct=20.0),
        {**_run("appserver", 1, 11000.0), "workload": "echo-1k"},
        {**_run("uvicorn", 1, 10000.0), "workload": "echo-1k"},
        {"workload": "echo-1k", "server": "bare", "round": 0, "skipped": "no bodies"},
    ]
    hello_runs = [r for r in runs if r["workload"] == "hello"]
    assert paired_ratio(hello_runs, "rate", of="bare") == pytest.approx((1.5 + 1.7) / 2)
    summary, echo_summary = summarize(hello, runs), summarize(echo, runs)
    assert summary["ratio"] == pytest.approx((1.1 + 1.2) / 2)  # appserver's, as before
    assert summary["ceiling"]["uvicorn"] == pytest.approx(1.6)
    assert summary["ceiling"]["granian"] is None  # granian did not run
    assert summary["steal_pct"] == pytest.approx(11.0)  # median of all six runs
    assert echo_summary["ceiling"] == {}
    table = format_table([summary, echo_summary])
    bare_row = next(line for line in table.splitlines() if line.split()[:1] == ["bare"])
    assert "32,000 req/s" in bare_row and "1.60x req/s" in bare_row
    appserver_row = next(line for line in table.splitlines() if line.startswith("hello"))
    assert "1.15x req/s" in appserver_row
    # echo has no bare row (it has a body), and its skip is not a note either.
    rows = [line.split() for line in table.splitlines()]
    assert sum(1 for row in rows if row[:1] == ["bare"]) == 1 and "no bodies" not in table
    assert "hello: the hypervisor took 11% of the CPU time" in table
    assert "echo-1k: the hypervisor" not in table  # no steal measured there
    assert "what a server doing no work reaches" in table


def test_a_run_with_steal_is_measured_again() -> None:
    from benchmarks.__main__ import retry_stolen

    def attempts(*steals: float | None) -> Callable[[], dict[str, object]]:
        queue = iter(steals)
        return lambda: {"rate": 1.0, "steal_pct": next(queue)}

    kept, passed_over = retry_stolen(attempts(20.0, 9.0, 3.0, 0.0), 5.0, 3)
    assert kept["steal_pct"] == 3.0 and kept["attempts"] == 3
    assert [r["steal_pct"] for r in passed_over] == [20.0, 9.0]
    kept, passed_over = retry_stolen(attempts(20.0, 30.0, 40.0), 5.0, 2)  # the last try is kept
    assert kept["steal_pct"] == 40.0 and kept["attempts"] == 3 and len(passed_over) == 2
    kept, passed_over = retry_stolen(attempts(None), 5.0, 2)  # unknown steal (no /proc/stat)
    assert kept["attempts"] == 1 and passed_over == []
    kept, passed_over = retry_stolen(attempts(50.0), 5.0, 0)
    assert kept["steal_pct"] == 50.0 and passed_over == []


def test_steal_share_of_cpu_time() -> None:
    assert runner.steal_pct((10, 1000), (60, 1500)) == pytest.approx(10.0)
    assert runner.steal_pct((10, 1000), (10, 1000)) is None
    steal, total = runner.cpu_times()
    assert 0 <= steal <= total and total > 0  # /proc/stat: this suite runs on Linux


@pytest.mark.parametrize(
    ("app", "framing", "body"),
    [
        ("hello", b"content-length: 13", apps.HELLO_BODY),
        ("big", b"content-length: 65536", apps.BIG_BODY),
        (
            "stream",
            b"transfer-encoding: chunked",
            b"400\r\n" + apps.STREAM_CHUNK + b"\r\n",
        ),
    ],
)
def test_bare_response_is_the_apps_answer(app: str, framing: bytes, body: bytes) -> None:
    response = bare.response_bytes(app)
    head, _, rest = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\ndate: ")
    assert framing in head.split(b"\r\n")
    if app == "stream":
        assert rest == body * apps.STREAM_CHUNKS + b"0\r\n\r\n"
    else:
        assert rest == body


def test_bare_runs_only_where_it_can_answer() -> None:
    runnable = {w.name for w in WORKLOADS if bare.skip_reason(w) is None}
    assert runnable == {"hello", "hello-1conn", "big-64k", "stream-10"}


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"closed after {len(data)} of {size} bytes"
        data += chunk
    return data


@pytest.mark.timeout(60)
def test_bare_server_answers_split_and_pipelined_heads() -> None:
    """The C server counts request heads across reads: a head sent a byte at a time gets one
    answer, a head whose blank line follows a stray CR gets one, and 100 pipelined heads get
    100 answers of 64 KiB, more than the socket holds, finished as the client reads."""
    try:
        bare.build()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    for app, workload in (("hello", "hello"), ("big", "big-64k")):
        expected = len(bare.response_bytes(app))
        with runner.running("bare", select([workload])[0], runner.Pinning()) as sp:
            runner.check_response(select([workload])[0], sp.port)
            with socket.create_connection(("127.0.0.1", sp.port), timeout=10) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for byte in request:
                    sock.sendall(bytes([byte]))
                    time.sleep(0.001)
                first = _read_exactly(sock, expected)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\r\n\r\n")
                stray = _read_exactly(sock, expected)
                sock.sendall(request * 100)
                time.sleep(0.2)  # the server fills the socket and waits for room
                rest = _read_exactly(sock, 100 * expected)
                sock.settimeout(0.3)
                with pytest.raises(TimeoutError):
                    sock.recv(1)  # nothing more than the answers asked for
        for answer in (first, stray):
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert rest.count(b"HTTP/1.1 200 OK\r\n") == 100
        assert sp.proc.returncode is not None  # stopped


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
