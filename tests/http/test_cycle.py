"""The sans-IO cycle, framing and response functions: no sockets, no loop."""

from __future__ import annotations

from typing import Any

import pytest

from appserver.errors import ClientDisconnected, ProtocolError
from appserver.http import cycle as cycle_module
from appserver.http.cycle import ConnectionInfo, DefaultHeaders, RequestCycle
from appserver.http.framing import Framing, request_keeps_alive, response_framing
from appserver.http.proxy import TrustedProxies
from appserver.http.response import scan_headers, simple_response, status_line
from appserver.http.target import split_target

START = {"type": "http.response.start", "status": 200, "headers": []}


def make_cycle(
    method: bytes = b"GET",
    target: bytes = b"/",
    version: str = "1.1",
    headers: list[tuple[bytes, bytes]] | None = None,
    **info: Any,
) -> RequestCycle:
    conn = ConnectionInfo(
        server=("127.0.0.1", 8000),
        client=("127.0.0.1", 5000),
        scheme="http",
        root_path=info.pop("root_path", ""),
        defaults=DefaultHeaders([(b"server", b"appserver")]),
        **info,
    )
    return RequestCycle(conn, method, target, version, headers or [(b"host", b"x")])


def body(data: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


# --- the response state machine --------------------------------------------------------------


def test_whole_response_in_one_write() -> None:
    cycle = make_cycle()
    cycle.end_request()
    assert cycle.on_send(START) == b""  # the head waits for the body
    assert cycle.on_send(body(b"hi")) == (
        b"HTTP/1.1 200 OK\r\nserver: appserver\r\ncontent-length: 2\r\n\r\nhi"
    )
    assert cycle.response_complete
    assert cycle.keep_alive


def test_whole_body_shortcut_is_a_different_path_to_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The wire tests run with the shortcut on and off; that only means something if turning
    # it off really sends the response through _head/_frame (which record the framing).
    written = {}
    for shortcut in (True, False):
        monkeypatch.setattr(cycle_module, "WHOLE_BODY_SHORTCUT", shortcut)
        cycle = make_cycle()
        cycle.end_request()
        cycle.on_send(START)
        written[shortcut] = cycle.on_send(body(b"hi"))
        assert hasattr(cycle, "_framing") is not shortcut
    assert written[True] == written[False]


@pytest.mark.parametrize("shortcut", [True, False])
@pytest.mark.parametrize("declared", [True, False])
def test_a_big_body_comes_back_beside_its_head_not_copied(
    monkeypatch: pytest.MonkeyPatch, shortcut: bool, declared: bool
) -> None:
    # From VECTOR_LIMIT on, the body is returned as its own piece, the app's very object (the
    # runtime writes the pieces in one vectored write); together they are the same bytes.
    monkeypatch.setattr(cycle_module, "WHOLE_BODY_SHORTCUT", shortcut)
    data = b"x" * cycle_module.VECTOR_LIMIT
    cycle = make_cycle()
    cycle.end_request()
    headers = [(b"content-length", str(len(data)).encode())] if declared else []
    cycle.on_send({**START, "headers": headers})
    out = cycle.on_send(body(data))
    assert isinstance(out, list) and out[-1] is data
    head = b"HTTP/1.1 200 OK\r\nserver: appserver\r\ncontent-length: %d\r\n\r\n" % len(data)
    assert b"".join(out) == head + data
    assert cycle.response_complete
    assert hasattr(cycle, "_framing") is not shortcut  # the monkeypatch took: both paths ran


def test_a_body_below_the_vector_limit_is_one_buffer_with_its_head() -> None:
    size = cycle_module.VECTOR_LIMIT - 1
    for more in (False, True):
        cycle = make_cycle()
        cycle.end_request()
        # Declared, so a streamed body is not chunk-framed (which would make it bigger).
        cycle.on_send({**START, "headers": [(b"content-length", b"%d" % (size + more))]})
        out = cycle.on_send(body(b"x" * size, more=more))
        assert isinstance(out, bytes) and out.startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_big_first_chunk_of_a_stream_comes_back_beside_the_head() -> None:
    data = b"y" * cycle_module.VECTOR_LIMIT
    cycle = make_cycle()
    cycle.end_request()
    cycle.on_send({**START, "headers": [(b"content-length", b"%d" % (len(data) + 1))]})
    out = cycle.on_send(body(data, more=True))
    assert isinstance(out, list) and out[-1] is data
    assert b"".join(out).endswith(b"content-length: %d\r\n\r\n" % (len(data) + 1) + data)
    assert cycle.on_send(body(b"z")) == b"z" and cycle.response_complete


def test_streamed_response_is_chunked() -> None:
    cycle = make_cycle()
    cycle.end_request()
    cycle.on_send(START)
    assert cycle.on_send(body(b"ab", more=True)) == (
        b"HTTP/1.1 200 OK\r\nserver: appserver\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n"
    )
    assert cycle.on_send(body(b"", more=True)) == b""  # an empty chunk would end the body
    assert cycle.on_send(body(b"c")) == b"1\r\nc\r\n0\r\n\r\n"


def test_body_before_start_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match=r"expected 'http\.response\.start'"):
        make_cycle().on_send(body(b"x"))


def test_start_twice_is_a_protocol_error() -> None:
    cycle = make_cycle()
    cycle.on_send(START)
    with pytest.raises(ProtocolError, match=r"expected 'http\.response\.body'"):
        cycle.on_send(START)


@pytest.mark.parametrize("message", [START, body(b"more")])
def test_anything_after_complete_is_a_protocol_error(message: dict[str, Any]) -> None:
    cycle = make_cycle()
    cycle.on_send(START)
    cycle.on_send(body(b""))
    with pytest.raises(ProtocolError, match="already complete"):
        cycle.on_send(message)


@pytest.mark.parametrize(
    "message",
    [
        None,
        {},
        {"type": "http.response.start", "status": "200"},
        {"type": "http.response.start", "status": 99},
        {"type": "http.response.start", "status": 1000},
    ],
)
def test_bad_start_messages(message: Any) -> None:
    with pytest.raises(ProtocolError):
        make_cycle().on_send(message)


def test_body_must_be_bytes() -> None:
    cycle = make_cycle()
    cycle.on_send(START)
    with pytest.raises(ProtocolError, match="must be bytes"):
        cycle.on_send(body("text"))  # type: ignore[arg-type]


def test_send_after_disconnect_raises_client_disconnected() -> None:
    cycle = make_cycle()
    cycle.disconnect()
    with pytest.raises(ClientDisconnected):
        cycle.on_send(START)
    assert cycle.next_event() == {"type": "http.disconnect"}


@pytest.mark.parametrize(
    ("declared", "sent"), [(b"5", [b"123456"]), (b"5", [b"1234"]), (b"5", [b"12", b"3456"])]
)
def test_content_length_is_enforced(declared: bytes, sent: list[bytes]) -> None:
    cycle = make_cycle()
    cycle.end_request()
    cycle.on_send({**START, "headers": [(b"content-length", declared)]})
    written = b""
    with pytest.raises(ProtocolError, match="Content-Length"):
        for i, data in enumerate(sent):
            written += cycle.on_send(body(data, more=i < len(sent) - 1))
    assert not cycle.response_complete
    failure = cycle.fail()
    if written:
        assert failure is None  # head already out: the connection must close
    else:
        assert failure is not None and failure.startswith(b"HTTP/1.1 500 ")
    assert not cycle.keep_alive


def test_fail_before_start_gives_500_and_close() -> None:
    cycle = make_cycle()
    assert cycle.fail() == (
        b"HTTP/1.1 500 Internal Server Error\r\nserver: appserver\r\n"
        b"content-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\n"
        b"connection: close\r\n\r\nInternal Server Error"
    )
    assert not cycle.keep_alive


def test_fail_mid_stream_closes() -> None:
    cycle = make_cycle()
    cycle.end_request()
    cycle.on_send(START)
    cycle.on_send(body(b"x", more=True))
    assert cycle.fail() is None
    assert not cycle.keep_alive


def test_fail_after_complete_keeps_alive() -> None:
    cycle = make_cycle()
    cycle.end_request()
    cycle.on_send(START)
    cycle.on_send(body(b"x"))
    assert cycle.fail() is None
    assert cycle.keep_alive


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-a", b"1\r\nset-cookie: evil=1")],
        [(b"x-a", b"1\nx")],
        [(b"x-a", b"1\rx")],
        [(b"x-a", b"a\x00b")],
        [(b"x a", b"1")],
        [(b"x-a\r\n", b"1")],
        [(b"", b"1")],
        [("x-a", b"1")],
        [(b"x-a", "1")],
        [(b"content-length", b"-1")],
        # RFC 9110 §8.6: digits only; int() alone would take these and send them on.
        [(b"content-length", b"+5")],
        [(b"content-length", b"1_0")],
        [(b"content-length", b"")],
        [(b"content-length", b"1"), (b"content-length", b"2")],
        [(b"transfer-encoding", b"gzip")],
    ],
)
def test_unsafe_response_headers_are_rejected(headers: list[tuple[Any, Any]]) -> None:
    with pytest.raises(ProtocolError):
        make_cycle().on_send({**START, "headers": headers})
    with pytest.raises(ProtocolError):
        scan_headers(headers)


@pytest.mark.parametrize(
    ("headers", "encoded", "length"),
    [
        ([(b"content-length", b"13")], b"content-length: 13\r\n", 13),
        # Optional whitespace around the value (RFC 9110 §5.5) is dropped, the name's case kept.
        ([(b"Content-Length", b" 7\t")], b"Content-Length: 7\r\n", 7),
        ([(b"content-length", b"0")], b"content-length: 0\r\n", 0),
        # Past a machine word the value is still exact.
        ([(b"content-length", b"12345678901234567890123")], None, 12345678901234567890123),
        # Any pair will do, not only a tuple; the same length twice is one length.
        ([[b"content-length", b"5"], (b"content-length", b"5")], None, 5),
        ([(b"x-a", b"1"), (b"content-length", b"2"), (b"x-b", b"3")], None, 2),
    ],
)
def test_content_length_is_read_and_kept(
    headers: list[Any], encoded: bytes | None, length: int
) -> None:
    lines, content_length, chunked, close, _ = scan_headers(headers)
    assert content_length == length
    assert not chunked and not close
    assert lines == (
        encoded
        if encoded is not None
        else b"".join(b"%s: %s\r\n" % (bytes(n), bytes(v).strip()) for n, v in headers)
    )


@pytest.mark.parametrize("item", [(b"x-a",), (b"x-a", b"1", b"2"), b"x-a", None])
def test_a_header_must_be_a_pair(item: Any) -> None:
    with pytest.raises(ProtocolError):
        scan_headers([item])


def test_head_request_gets_head_only() -> None:
    cycle = make_cycle(method=b"HEAD")
    cycle.end_request()
    cycle.on_send(START)
    assert cycle.on_send(body(b"hello")) == (
        b"HTTP/1.1 200 OK\r\nserver: appserver\r\ncontent-length: 5\r\n\r\n"
    )


def test_app_connection_close_ends_keep_alive() -> None:
    cycle = make_cycle()
    cycle.end_request()
    cycle.on_send({**START, "headers": [(b"connection", b"close")]})
    assert cycle.on_send(body(b"")) == (
        b"HTTP/1.1 200 OK\r\nserver: appserver\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    )
    assert not cycle.keep_alive


def test_answer_before_request_complete_closes() -> None:
    cycle = make_cycle(method=b"POST", headers=[(b"host", b"x"), (b"content-length", b"10")])
    cycle.on_send(START)
    assert cycle.on_send(body(b"")).endswith(b"connection: close\r\n\r\n")
    assert not cycle.keep_alive


def test_request_body_events() -> None:
    cycle = make_cycle(method=b"POST")
    assert cycle.next_event() is None
    cycle.feed_body(b"ab")
    cycle.feed_body(b"c")
    assert cycle.buffered == 3
    assert cycle.next_event() == {"type": "http.request", "body": b"abc", "more_body": True}
    assert cycle.next_event() is None
    cycle.end_request()
    assert cycle.next_event() == {"type": "http.request", "body": b"", "more_body": False}
    assert cycle.next_event() is None  # then wait for a disconnect
    cycle.disconnect()
    assert cycle.next_event() == {"type": "http.disconnect"}


def test_continue_only_once_and_only_when_waiting() -> None:
    cycle = make_cycle(method=b"POST", headers=[(b"host", b"x"), (b"expect", b"100-continue")])
    assert cycle.take_continue() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert cycle.take_continue() == b""
    answered = make_cycle(method=b"POST", headers=[(b"expect", b"100-continue")])
    answered.on_send(START)
    assert answered.take_continue() == b""
    old = make_cycle(version="1.0", headers=[(b"expect", b"100-continue")])
    assert old.take_continue() == b""


# --- scope ------------------------------------------------------------------------------------


def test_scope_keys_and_state_copy() -> None:
    state = {"db": "pool"}
    cycle = make_cycle(target=b"/a%2Fb?x=1", root_path="/r", app_state=state)
    scope = cycle.scope
    assert scope == {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 5000),
        "scheme": "http",
        "method": "GET",
        "root_path": "/r",
        "path": "/r/a/b",
        "raw_path": b"/r/a%2Fb",
        "query_string": b"x=1",
        "headers": [(b"host", b"x")],
        "state": {"db": "pool"},
    }
    scope["state"]["db"] = "changed"
    assert state == {"db": "pool"}


def test_forwarded_headers_only_through_a_trusted_proxy() -> None:
    headers = [(b"x-forwarded-for", b"1.2.3.4"), (b"x-forwarded-proto", b"https")]
    trusted = make_cycle(headers=headers, proxy=TrustedProxies(["127.0.0.1"]))
    assert trusted.scope["client"] == ("1.2.3.4", 0)
    assert trusted.scope["scheme"] == "https"
    untrusted = make_cycle(headers=headers)
    assert untrusted.scope["client"] == ("127.0.0.1", 5000)
    assert untrusted.scope["scheme"] == "http"
    bogus = make_cycle(headers=[(b"x-forwarded-proto", b"javascript")], proxy=TrustedProxies(["*"]))
    assert bogus.scope["scheme"] == "http"


@pytest.mark.parametrize("target", [b"/caf\xc3\xa9", b"http:///nohost", b"\xff"])
def test_bad_targets(target: bytes) -> None:
    with pytest.raises(ProtocolError):
        split_target(target)


def test_split_target() -> None:
    assert split_target(b"/a%20b?q=%20") == ("/a b", b"/a%20b", b"q=%20")
    assert split_target(b"*") == ("*", b"*", b"")
    assert split_target(b"http://h:1/p?q") == ("/p", b"/p", b"q")
    assert split_target(b"http://h") == ("/", b"/", b"")


# --- framing and keep-alive decisions -----------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "close", "expected"),
    [("1.1", False, True), ("1.1", True, False), ("1.0", False, False), ("1.0", True, False)],
)
def test_request_keeps_alive(version: str, close: bool, expected: bool) -> None:
    assert request_keeps_alive(version, close) is expected


@pytest.mark.parametrize(
    ("status", "head", "length", "whole", "version", "expected"),
    [
        (200, True, None, True, "1.1", Framing.NO_BODY),
        (204, False, None, True, "1.1", Framing.NO_BODY),
        (304, False, 10, True, "1.1", Framing.NO_BODY),
        (101, False, None, False, "1.1", Framing.NO_BODY),
        (200, False, 10, False, "1.1", Framing.LENGTH),
        (200, False, None, True, "1.1", Framing.LENGTH),
        (200, False, None, False, "1.1", Framing.CHUNKED),
        (200, False, None, False, "1.0", Framing.CLOSE),
        (200, False, 10, False, "1.0", Framing.LENGTH),
    ],
)
def test_response_framing(
    status: int, head: bool, length: int | None, whole: bool, version: str, expected: Framing
) -> None:
    assert response_framing(status, head, length, whole, version) is expected


def test_status_lines() -> None:
    assert status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert status_line(599) == b"HTTP/1.1 599 \r\n"
    with pytest.raises(ProtocolError):
        status_line(42)


def test_simple_response() -> None:
    assert simple_response(503, b"busy", b"server: s\r\n", close=False) == (
        b"HTTP/1.1 503 Service Unavailable\r\nserver: s\r\n"
        b"content-type: text/plain; charset=utf-8\r\ncontent-length: 4\r\n\r\nbusy"
    )
