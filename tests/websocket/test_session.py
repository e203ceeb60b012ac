"""The sans-IO session alone: bytes in, ASGI messages and exact bytes out, no loop, no socket."""

from __future__ import annotations

import pytest

from appserver.errors import ProtocolError
from appserver.runtime.loader import resolve_ws, ws_protocol
from appserver.runtime.ws_protocol import WebSocketProtocol
from appserver.websocket.session import SessionState, websocket_scope
from tests.websocket.helpers import BINARY, CLOSE, PING, TEXT, close_payload, frame, make_session

ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # for helpers.KEY, RFC 6455 §1.3's example


def test_scope_scheme_and_subprotocols() -> None:
    session = make_session(
        "https", [(b"sec-websocket-protocol", b"a, b"), (b"sec-websocket-protocol", b"c")]
    )
    assert session.scope["scheme"] == "wss"
    assert session.scope["subprotocols"] == ["a", "b", "c"]
    assert websocket_scope(make_session().cycle.scope)["scheme"] == "ws"


def test_accept_exact_bytes_then_messages() -> None:
    session = make_session(extra=[(b"sec-websocket-protocol", b"chat")])
    assert session.handshake()
    assert session.data_to_send() == (b"", False)  # nothing until the app answers
    assert session.next_event() == {"type": "websocket.connect"}
    assert session.next_event() is None
    session.on_send(
        {"type": "websocket.accept", "subprotocol": "chat", "headers": [(b"x-a", b"1")]}
    )
    assert session.state is SessionState.OPEN
    assert session.data_to_send() == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + ACCEPT + b"\r\nSec-WebSocket-Protocol: chat\r\n"
        b"server: appserver\r\nx-a: 1\r\n\r\n",
        False,
    )
    session.receive_data(frame(TEXT, b"hi") + frame(BINARY, b"\x00"))
    assert session.next_event() == {"type": "websocket.receive", "text": "hi"}
    assert session.next_event() == {"type": "websocket.receive", "bytes": b"\x00"}
    session.on_send({"type": "websocket.send", "text": "yo"})
    session.on_send({"type": "websocket.send", "bytes": b"\x01\x02"})
    assert session.data_to_send() == (b"\x81\x02yo\x82\x02\x01\x02", False)
    session.receive_data(frame(CLOSE, close_payload(1001, b"away")))
    assert session.data_to_send() == (b"\x88\x06\x03\xe9away", True)  # echo, then close TCP
    assert session.next_event() == {"type": "websocket.disconnect", "code": 1001, "reason": "away"}
    with pytest.raises(OSError):
        session.on_send({"type": "websocket.send", "text": "late"})


def test_subprotocol_not_offered_is_an_app_error() -> None:
    session = make_session()
    assert session.handshake()
    with pytest.raises(ProtocolError):
        session.on_send({"type": "websocket.accept", "subprotocol": "chat"})


def test_bad_header_in_accept_is_an_app_error() -> None:
    session = make_session()
    assert session.handshake()
    with pytest.raises(ProtocolError):
        session.on_send({"type": "websocket.accept", "headers": [(b"x", b"a\r\nb: c")]})


def test_shutdown_before_accept_closes_right_after_it() -> None:
    session = make_session()
    assert session.handshake()
    session.shutdown()
    session.on_send({"type": "websocket.accept"})
    data, close = session.data_to_send()
    assert data.endswith(b"\r\n\r\n\x88\x02\x03\xf4")  # 101, then close 1012
    assert not close  # waiting for the client's answer


def test_resolve_ws() -> None:
    assert resolve_ws("none") is False
    assert resolve_ws("auto") is True
    assert resolve_ws("websockets") is True
    assert ws_protocol() is WebSocketProtocol


def test_frames_before_accept_are_read_after_it() -> None:
    """A client that sends before the handshake response (RFC 6455 §4.1 says it must not) gets
    nothing, not even a pong, before the 101; the app hears of its frames after accepting."""
    session = make_session()
    assert session.handshake()
    session.receive_data(frame(PING, b"early") + frame(TEXT, b"hi"))
    assert session.data_to_send() == (b"", False)
    assert session.next_event() == {"type": "websocket.connect"}
    assert session.next_event() is None
    session.on_send({"type": "websocket.accept"})
    data, close = session.data_to_send()
    assert data.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert data.endswith(b"\r\n\r\n\x8a\x05early")  # the 101, then the pong
    assert not close
    assert session.next_event() == {"type": "websocket.receive", "text": "hi"}


def test_too_much_before_accept_drops_the_connection() -> None:
    session = make_session(max_size=1024)
    assert session.handshake()
    session.receive_data(frame(BINARY, b"x" * 1000))
    assert session.data_to_send() == (b"", False)
    session.receive_data(frame(BINARY, b"y" * 100))
    assert session.data_to_send() == (b"", True)  # no answer to the handshake: just close
    assert session.next_event() == {"type": "websocket.connect"}
    assert session.next_event() == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
