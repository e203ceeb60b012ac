"""One WebSocket connection as an ASGI state machine, sans-IO.

The HTTP side parses the handshake request (h11 or httptools, through the one request cycle)
and hands the :class:`~appserver.http.cycle.RequestCycle` over; from then on this session owns
the connection's protocol state. It drives a websockets ``ServerProtocol`` for everything
RFC 6455 (handshake checks, extension negotiation, framing, masking, limits, the closing
handshake) and adds what ASGI needs on top: the scope, message assembly, and the
CONNECTING -> OPEN / RESPONDING -> CLOSED state machine of the app's ``send()``.

One shortcut, for speed: while the connection is open without extensions, complete unfragmented
masked text and binary frames are read and written here (:mod:`appserver.websocket.frames`)
instead of through the library's parser and serializer, which cost more than everything else a
small message does. Every other frame (control frames, fragments, anything malformed or too
big) still goes to the library, as its bytes arrive but always starting at a frame boundary, so
its parser is at one whenever a shortcut frame comes, and it fails bad input as early and in the
same way as it would alone.

Calling contract (the runtime's side):

* ``handshake()`` once, first. False means the request was not a valid handshake: a
  rejection is waiting in ``data_to_send()`` and the app must not run.
* ``receive_data(data)`` / ``receive_eof()`` / ``connection_lost()`` for what the network did,
  then ``data_to_send()`` and write what it returns (one flush point).
* ``next_event()`` is the synchronous half of ASGI ``receive()``: a message or None.
* ``on_send(message)`` is the synchronous half of ASGI ``send()``; then ``data_to_send()``.
* ``app_returned()`` / ``app_failed()`` when the app's coroutine ends; ``shutdown()`` for a
  graceful server stop; ``ping()`` / ``ping_unanswered()`` for the keepalive timer.
"""

from __future__ import annotations

import enum
import logging
import os
from collections import deque
from typing import Any

from websockets.datastructures import Headers
from websockets.exceptions import InvalidState
from websockets.exceptions import ProtocolError as WSProtocolError
from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from appserver.errors import ClientDisconnected, ProtocolError
from appserver.http.cycle import ASGI_VERSIONS, Output, RequestCycle
from appserver.http.response import scan_headers, simple_response
from appserver.websocket.frames import (
    FAST_BINARY,
    FAST_TEXT,
    apply_mask,
    frame_bounds,
    server_frame_head,
)

ws_logger = logging.getLogger("appserver.websockets")

# ASGI extension that lets the app deny the handshake with an ordinary HTTP response.
HTTP_RESPONSE_EXTENSION = "websocket.http.response"


class SessionState(enum.Enum):
    CONNECTING = "connecting"  # the app has not answered the handshake yet
    RESPONDING = "responding"  # the app denies it with an HTTP response, body still coming
    OPEN = "open"  # accepted: messages flow both ways
    CLOSED = "closed"  # the app closed or denied, or the connection ended


_CONNECTING = SessionState.CONNECTING
_RESPONDING = SessionState.RESPONDING
_OPEN = SessionState.OPEN
_CLOSED = SessionState.CLOSED
_WS_OPEN = State.OPEN

# Which app messages each state accepts (ASGI websocket spec); anything else is an app bug.
ALLOWED_SENDS: dict[SessionState, frozenset[str]] = {
    _CONNECTING: frozenset(
        {"websocket.accept", "websocket.close", "websocket.http.response.start"}
    ),
    _RESPONDING: frozenset({"websocket.http.response.body"}),
    _OPEN: frozenset({"websocket.send", "websocket.close"}),
    _CLOSED: frozenset(),
}


def websocket_scope(http_scope: dict[str, Any]) -> dict[str, Any]:
    """The ASGI websocket scope for a handshake whose HTTP scope the request cycle built."""
    scheme = http_scope["scheme"]
    if scheme == "http":
        scheme = "ws"
    elif scheme == "https":
        scheme = "wss"
    subprotocols: list[str] = []
    for name, value in http_scope["headers"]:
        if name == b"sec-websocket-protocol":
            # RFC 6455 §11.3.4: a comma-separated list; the header may also be repeated.
            subprotocols.extend(
                token.strip() for token in value.decode("latin-1").split(",") if token.strip()
            )
    return {
        "type": "websocket",
        "asgi": ASGI_VERSIONS,
        "http_version": http_scope["http_version"],
        "scheme": scheme,
        "server": http_scope["server"],
        "client": http_scope["client"],
        "root_path": http_scope["root_path"],
        "path": http_scope["path"],
        "raw_path": http_scope["raw_path"],
        "query_string": http_scope["query_string"],
        "headers": http_scope["headers"],
        "subprotocols": subprotocols,
        "state": http_scope["state"],
        "extensions": {HTTP_RESPONSE_EXTENSION: {}, **http_scope.get("extensions", {})},
    }


def _handshake_request(scope: dict[str, Any]) -> bytes:
    """The request head again, for ``ServerProtocol`` to parse.

    The library's parser starts in CONNECTING and must see the request before it reads frames;
    replaying the head we already parsed keeps to its public contract. The path only reaches
    its logs, so non-ASCII bytes are escaped rather than refused.
    """
    target = scope["raw_path"]
    if scope["query_string"]:
        target += b"?" + scope["query_string"]
    path = target.decode("latin-1").encode("ascii", "backslashreplace").decode("ascii")
    headers = Headers(
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
    )
    return Request(path, headers).serialize()


class WebSocketSession:
    """One WebSocket connection. See the module docstring for the calling contract."""

    # False: every byte goes straight to the library, as if the shortcut did not exist (the
    # tests compare both ways).
    shortcut = True

    def __init__(
        self,
        cycle: RequestCycle,
        *,
        max_size: int,
        per_message_deflate: bool,
    ) -> None:
        self.cycle = cycle
        self.scope = websocket_scope(cycle.scope)
        extensions: list[ServerExtensionFactory] | None = None
        if per_message_deflate:
            extensions = list(enable_server_permessage_deflate(None))
        self.protocol = ServerProtocol(extensions=extensions, max_size=max_size, logger=ws_logger)
        self.max_size = max_size
        self._fast = False  # the framing shortcut applies: accepted with no extension
        # Frame routing (see _split): the start of a frame for the shortcut, until it is whole;
        # what the library still needs of the frame it is reading (-1: its length is unknown
        # yet, and _library_head holds the header bytes so far).
        self._pending = bytearray()
        self._library_left = 0
        self._library_head = bytearray()
        # Bytes that came before the app accepted (read once it has: see receive_data).
        self._early = bytearray()
        self.state = _CONNECTING
        self.disconnected = False  # the transport is gone
        self._events: deque[dict[str, Any]] = deque([{"type": "websocket.connect"}])
        self._disconnect: dict[str, Any] | None = None
        self._response: Response | None = None  # the 101 accept() prepared
        self._out: list[bytes] = []  # what we wrote ourselves: HTTP answers, shortcut frames
        self._close_after = False  # close the transport once _out is written
        self._fragments: list[bytes] = []  # non-empty inside a fragmented message
        self._fragment_text = False
        self._pings: set[bytes] = set()
        self._shutdown_pending = False

    # --- handshake -----------------------------------------------------------------------------
    def handshake(self) -> bool:
        """Check the handshake and negotiate extensions. False: a rejection is pending."""
        protocol = self.protocol
        protocol.receive_data(_handshake_request(self.cycle.scope))
        request = next((e for e in protocol.events_received() if isinstance(e, Request)), None)
        if request is None:  # the library refused the head (too many or too long headers)
            self.end_with(None)
            return False
        # No subprotocols offered here: the app picks one later, in websocket.accept.
        response = protocol.accept(request)
        if response.status_code != 101:
            protocol.send_response(response)
            self.end_with(None)
            return False
        self._response = response
        return True

    # --- network side ----------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        if self.disconnected or self._close_after or self.protocol.eof_sent:
            # An HTTP answer is on its way out, or the closing handshake is over or the
            # connection failed: nothing the client adds matters any more.
            return
        if self.state is _CONNECTING:
            # RFC 6455 §4.1: a client waits for the handshake response before it sends frames.
            # Frames from one that does not are read once the app accepts, so that nothing
            # (a pong, a close) can be written before the 101; the app hears of them then too.
            early = self._early
            early += data
            if len(early) > self.max_size + 14:  # more than one message of the largest size
                self.end_with(None)
            return
        if not self.shortcut:
            self._to_library(data)
            return
        pos = 0
        if self._library_left:
            pos = self._continue_library_frame(data)
            if pos == len(data) or self.protocol.eof_sent:
                return
        pending = self._pending
        if pending:  # the start of a frame for the shortcut: wait until it is whole
            # (never set together with _library_left, so pos is 0 here)
            pending += data
            if len(pending) < 2:
                return
            head, length = frame_bounds(pending, 0)
            if pending[1] & 0x80 and (
                head < 0 or (length <= self.max_size and len(pending) < head + length)
            ):
                return  # masked, and not over the limit: wait for the rest
            data = bytes(pending)  # whole, or not for the shortcut after all: _split decides
            pending.clear()
        self._split(data, pos)

    def _split(self, data: bytes, pos: int) -> None:
        """Route the frames in ``data`` from ``pos``, which is a frame boundary.

        Whole frames for the shortcut are delivered here; the start of one is kept in
        ``_pending`` until the rest arrives. Every other frame goes to the library at once,
        as far as it has arrived (so it fails a bad header as early as it would alone), and
        ``_library_left`` counts what the library still needs to finish it.
        """
        protocol = self.protocol
        end = len(data)
        while pos < end:
            head, length = frame_bounds(data, pos)
            first = data[pos]
            if (
                first in (FAST_TEXT, FAST_BINARY)
                and self._fast
                and protocol.state is _WS_OPEN
                and not self._fragments
                and (pos + 1 == end or data[pos + 1] & 0x80)  # masked, as a client must
                and length <= self.max_size
            ):
                stop = head + length
                if head < 0 or stop > end:
                    self._pending += data[pos:]
                    return
                self._deliver(
                    apply_mask(data[head:stop], data[head - 4 : head]), first == FAST_TEXT
                )
                if protocol.eof_sent:  # invalid UTF-8 failed the connection
                    self._queue_disconnect()
                    return
                pos = stop
                continue
            if head < 0:  # the library has the start of a header; we learn its length later
                self._library_head = bytearray(data[pos:])
                self._library_left = -1
                self._to_library(data[pos:] if pos else data)
                return
            stop = head + length
            if stop > end:
                self._library_left = stop - end
                self._to_library(data[pos:] if pos else data)
                return
            self._to_library(data[pos:stop])
            if protocol.eof_sent:
                return
            pos = stop

    def _continue_library_frame(self, data: bytes) -> int:
        """Give the library the rest of the frame it is in; where that frame ends in ``data``."""
        left = self._library_left
        if left < 0:  # we have not seen its length yet
            seen = self._library_head
            head, length = frame_bounds(seen + data[:14], 0)  # a header is at most 14 bytes
            if head < 0:
                seen += data
                self._to_library(data)
                return len(data)
            left = head + length - len(seen)
            self._library_head = bytearray()
        take = min(left, len(data))
        self._library_left = left - take
        self._to_library(data[:take] if take < len(data) else data)
        return take

    def _to_library(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        self._take_events()

    def receive_eof(self) -> None:
        if not self.disconnected:
            if self._pending and not self.protocol.eof_sent:
                self.protocol.receive_data(bytes(self._pending))  # a frame cut short
                self._pending.clear()
            self.protocol.receive_eof()
            self._take_events()

    def connection_lost(self) -> None:
        self.disconnected = True
        self._queue_disconnect()
        if self.state is not _CLOSED:
            self.state = _CLOSED

    def _take_events(self) -> None:
        protocol = self.protocol
        for event in protocol.events_received():
            if not isinstance(event, Frame):
                continue
            opcode = event.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                self._fragment_text = opcode is Opcode.TEXT
                if event.fin:
                    self._deliver(bytes(event.data), self._fragment_text)
                else:
                    self._fragments = [bytes(event.data)]
            elif opcode is Opcode.CONT:
                # ServerProtocol enforces max_size over the whole message as it grows.
                self._fragments.append(bytes(event.data))
                if event.fin:
                    data = b"".join(self._fragments)
                    self._fragments = []
                    self._deliver(data, self._fragment_text)
            elif opcode is Opcode.PONG and bytes(event.data) in self._pings:
                # Any answer proves the peer alive; RFC 6455 §5.5.3 allows answering only
                # the latest ping, so older ones are forgiven too.
                self._pings.clear()
            if protocol.eof_sent:
                break  # failed (or closed): RFC 6455 §7.1.7, process nothing more
        if protocol.state is State.CLOSED or protocol.eof_sent:
            # A close frame arrived (and was echoed), or the library failed the connection
            # (1002, 1007, 1009): either way no more messages come.
            self._queue_disconnect()

    def _deliver(self, data: bytes, is_text: bool) -> None:
        if is_text:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                # RFC 6455 §8.1: invalid UTF-8 in a text message fails the connection, 1007.
                self.protocol.fail(CloseCode.INVALID_DATA, "invalid UTF-8")
                return
            self._events.append({"type": "websocket.receive", "text": text})
        else:
            self._events.append({"type": "websocket.receive", "bytes": data})

    def _close_frame(self) -> Any:
        # The close the peer sent, else the one we sent when we failed the connection.
        protocol = self.protocol
        return protocol.close_rcvd or protocol.close_sent

    @property
    def close_code(self) -> int:
        """The code the peer sent (1005 when its close frame had none), else the one we sent
        when we failed the connection (1009, 1011, 1012 ...), else 1006: no close at all."""
        close = self._close_frame()
        return int(close.code) if close is not None else int(CloseCode.ABNORMAL_CLOSURE)

    def _queue_disconnect(self) -> None:
        if self._disconnect is not None:
            return
        close = self._close_frame()
        self._disconnect = {
            "type": "websocket.disconnect",
            "code": self.close_code,
            "reason": close.reason if close is not None else "",
        }

    # --- the app's receive() ---------------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Messages received and not yet taken by the app (for read back-pressure)."""
        return len(self._events)

    def next_event(self) -> dict[str, Any] | None:
        """The next ``receive()`` message, or None when the runtime must wait."""
        if self._events:
            return self._events.popleft()
        return self._disconnect  # repeated on every call once the connection has ended

    # --- the app's send() ------------------------------------------------------------------------
    def on_send(self, message: Any) -> None:
        """Check one ASGI message against the state and act on it; then call data_to_send()."""
        try:
            message_type = message["type"]
        except (TypeError, KeyError):
            raise ProtocolError(f"ASGI message without a type: {message!r}") from None
        state = self.state
        if message_type not in ALLOWED_SENDS[state]:
            if self.disconnected or self._disconnect is not None:
                raise ClientDisconnected("the WebSocket connection is closed")
            raise ProtocolError(f"unexpected {message_type!r} in WebSocket state {state.value}")
        if self.disconnected:
            raise ClientDisconnected("the client closed the connection")
        if message_type == "websocket.send":
            self._send_message(message)
        elif message_type == "websocket.accept":
            self._accept(message)
        elif message_type == "websocket.close":
            if state is _CONNECTING:
                # ASGI: a close before accept rejects the handshake with 403 Forbidden.
                self.end_with(simple_response(403, b"Forbidden", self.cycle.defaults.encoded))
            else:
                self._close(message)
        else:  # websocket.http.response.start / .body: denial through the HTTP cycle
            self._respond(message)

    def _accept(self, message: Any) -> None:
        response = self._response
        assert response is not None
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            # RFC 6455 §4.2.2: the server picks one of the values the client offered.
            if subprotocol not in self.scope["subprotocols"]:
                raise ProtocolError(f"subprotocol {subprotocol!r} was not offered by the client")
            response.headers["Sec-WebSocket-Protocol"] = subprotocol
            self.protocol.subprotocol = subprotocol
        extra = list(message.get("headers") or ())
        scan_headers(extra)  # the same checks as HTTP responses: tokens, no CR/LF/NUL
        del response.headers["Date"]  # ours is cached once a second, like every response
        for name, value in (*self.cycle.defaults.pairs, *extra):
            response.headers[name.decode("latin-1")] = value.decode("latin-1")
        self._response = None
        self.state = _OPEN
        self.protocol.send_response(response)
        self._fast = self.shortcut and not self.protocol.extensions
        if self._early:
            early = bytes(self._early)
            self._early = bytearray()
            self.receive_data(early)
        if self._shutdown_pending:
            self.shutdown()

    def _send_message(self, message: Any) -> None:
        text = message.get("text")
        data = message.get("bytes")
        protocol = self.protocol
        if protocol.state is not State.OPEN:
            raise ClientDisconnected("the WebSocket connection is closing")
        if text is not None and data is None:
            if not isinstance(text, str):
                raise ProtocolError(f"websocket.send text must be str, got {type(text).__name__}")
            if self._fast:
                self._send_frame(FAST_TEXT, text.encode("utf-8"))
            else:
                protocol.send_text(text.encode("utf-8"))
        elif data is not None and text is None:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise ProtocolError(
                    f"websocket.send bytes must be bytes, got {type(data).__name__}"
                )
            if self._fast:
                self._send_frame(FAST_BINARY, bytes(data))
            else:
                protocol.send_binary(data)
        else:
            raise ProtocolError("websocket.send needs exactly one of 'bytes' and 'text'")

    def _send_frame(self, first: int, payload: bytes) -> None:
        """The shortcut for send_text / send_binary: one unfragmented, unmasked frame."""
        out = self._out
        pending = self.protocol.data_to_send()  # keep order with the library's frames (pongs)
        if pending:
            out.extend(pending)
        head = server_frame_head(first, len(payload))
        if len(payload) < 4096:
            out.append(head + payload)  # one small chunk; bigger payloads are not copied twice
        else:
            out.append(head)
            out.append(payload)

    def _close(self, message: Any) -> None:
        code = message.get("code", 1000)
        reason = message.get("reason") or ""
        if self.protocol.state is State.OPEN:
            try:
                self.protocol.send_close(code, reason)
            except (WSProtocolError, InvalidState, TypeError, ValueError) as exc:
                raise ProtocolError(f"invalid websocket.close: {exc}") from None
        # else the client closed first: its close frame was already echoed.
        self.state = _CLOSED

    def _respond(self, message: Any) -> None:
        cycle = self.cycle
        if message["type"] == "websocket.http.response.start":
            cycle.keep_alive = False  # the connection ends with this response
            self._output(
                cycle.on_send(
                    {
                        "type": "http.response.start",
                        "status": message.get("status"),
                        "headers": message.get("headers", ()),
                    }
                )
            )
            self.state = _RESPONDING
            return
        data = cycle.on_send(
            {
                "type": "http.response.body",
                "body": message.get("body", b""),
                "more_body": message.get("more_body", False),
            }
        )
        if cycle.response_complete:
            self.end_with(data)
        else:
            self._output(data)

    def _output(self, data: Output) -> None:
        """Queue what the HTTP cycle returned: bytes, or a big body's pieces."""
        if isinstance(data, list):
            self._out.extend(data)
        elif data:
            self._out.append(data)

    def end_with(self, data: Output | None) -> None:
        """No WebSocket after all: write ``data`` (an HTTP response) if any, then close."""
        if data:
            self._output(data)
        self.state = _CLOSED
        self._close_after = True
        self._queue_disconnect()

    # --- ends ------------------------------------------------------------------------------------
    def app_returned(self) -> bool:
        """The app's coroutine returned. False when it never answered the handshake (a bug)."""
        state = self.state
        if state is _CONNECTING:
            self.app_failed()
            return False
        if state is _RESPONDING:
            self.app_failed()
            return False
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(CloseCode.NORMAL_CLOSURE)  # the app is done: say so
        self.state = _CLOSED
        return True

    def app_failed(self) -> None:
        """The app raised (or returned too early): 500 before accept, 1011 after it."""
        state = self.state
        self.state = _CLOSED
        if self.disconnected:
            return
        if state is _CONNECTING:
            self.end_with(
                simple_response(500, b"Internal Server Error", self.cycle.defaults.encoded)
            )
        elif state is _RESPONDING:
            self.end_with(self.cycle.fail())  # a 500 if the head is still held back, else a cut
        elif self.protocol.state is State.OPEN:  # accepted, and no close frame yet
            self.protocol.send_close(CloseCode.INTERNAL_ERROR)

    def shutdown(self) -> None:
        """Graceful stop: close with 1012 (Service Restart) now, or right after accept."""
        if self.state is _CONNECTING:
            self._shutdown_pending = True
        elif self.protocol.state is State.OPEN and self.state is _OPEN:
            self.protocol.send_close(CloseCode.SERVICE_RESTART)
            # The app hears of it now, not when (or if) the client echoes the close: a drain
            # must not wait on a client for a handler that waits in receive(). Messages that
            # already arrived still come first.
            self._queue_disconnect()

    # --- keepalive -------------------------------------------------------------------------------
    def ping(self) -> bytes | None:
        """Send a keepalive ping; its payload, or None when the connection is not open."""
        if self.state is not _OPEN or self.protocol.state is not State.OPEN:
            return None
        payload = os.urandom(4)
        self._pings.add(payload)
        self.protocol.send_ping(payload)
        return payload

    def ping_unanswered(self, payload: bytes) -> bool:
        return payload in self._pings

    def fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): close frame, then close the TCP connection."""
        self.protocol.fail(code, reason)
        self._queue_disconnect()

    # --- output ----------------------------------------------------------------------------------
    def data_to_send(self) -> tuple[bytes, bool]:
        """What to write now, and whether to close the transport after writing it."""
        chunks = self.protocol.data_to_send()
        close = self._close_after
        if chunks and chunks[-1] == b"":  # websockets' SEND_EOF: the server closes TCP
            chunks.pop()
            close = True
        out = self._out
        if out:
            chunks = [*out, *chunks]
            out.clear()
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return data, close

    def close_expected(self) -> bool:
        """True while we wait for the client to finish a closing handshake we started."""
        return self.protocol.close_expected()
