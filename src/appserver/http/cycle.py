"""THE request/response cycle: one HTTP/1.1 exchange as an ASGI state machine, sans-IO.

The runtime creates a :class:`RequestCycle` when a parser adapter reports a request head,
feeds it body bytes and the end of the request, and lets the app drive it:

* ``next_event()`` is the synchronous half of ASGI ``receive()``: the next message, or ``None``
  when the runtime must wait for more bytes (or a disconnect) first.
* ``on_send(message)`` is the synchronous half of ASGI ``send()``: it checks the message against
  the response state and returns the bytes to write (often ``b""`` until there is something
  worth a write: the head is held back so that head and a whole body go out in one write), or
  for a big body the pieces to write together, so it is not copied (:data:`Output`).

Both parser adapters share this code, so h11 and httptools answer the same bytes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from appserver._accel import mypyc_attr
from appserver.errors import ClientDisconnected, ProtocolError
from appserver.http.forwarded import PROXY_FIELDS, apply_forwarded
from appserver.http.framing import Framing, request_keeps_alive, response_framing
from appserver.http.proxy import TrustedProxies
from appserver.http.response import (
    CONTINUE_100,
    encode_default_headers,
    scan_headers,
    simple_response,
    status_line,
)
from appserver.http.target import split_target

ASGI_VERSIONS: Final = {"version": "3.0", "spec_version": "2.4"}
_CYCLE_HEADERS: Final = frozenset(
    (
        b"connection",
        b"expect",
        b"upgrade",
        b"proxy-connection",
        *PROXY_FIELDS,
    )
)


class DefaultHeaders:
    """The headers every response carries (server, date, custom), kept encoded.

    The server replaces them once a second (the Date header); each response reads ``encoded``,
    so the per-request cost is one attribute lookup.
    """

    __slots__ = ("encoded", "pairs")

    def __init__(self, pairs: list[tuple[bytes, bytes]] | None = None) -> None:
        self.pairs: list[tuple[bytes, bytes]] = []
        self.encoded = b""
        self.update(pairs or [])

    def update(self, pairs: list[tuple[bytes, bytes]]) -> None:
        self.pairs = pairs
        self.encoded = encode_default_headers(pairs)

    def without(self, names: frozenset[bytes]) -> bytes:
        return encode_default_headers(self.pairs, names)

    def with_header(self, name: bytes, value: bytes) -> DefaultHeaders:
        """These headers plus one, for one response (an echoed request id)."""
        extra = DefaultHeaders()
        extra.pairs = [*self.pairs, (name, value)]
        extra.encoded = self.encoded + encode_default_headers(((name, value),))
        return extra


@dataclass(slots=True)
class ConnectionInfo:
    """What every request on one connection shares; built once when the connection opens."""

    server: tuple[str, int | None] | None  # (path, None) on a Unix socket
    client: tuple[str, int] | None
    scheme: str  # "http" or "https"
    root_path: str
    defaults: DefaultHeaders
    # Proxies whose X-Forwarded-* headers we believe, or None when this peer is not one.
    proxy: TrustedProxies | None = None
    app_state: dict[str, Any] = field(default_factory=dict)
    # scope["extensions"] for every request on the connection (the TLS extension), or None.
    extensions: dict[str, Any] | None = None


class ResponseState(enum.Enum):
    WAITING = "waiting"  # no http.response.start yet
    STARTED = "started"  # start received; head held back until the first body message
    STREAMING = "streaming"  # head written, more body to come
    DONE = "done"  # response complete


_WAITING: Final = ResponseState.WAITING
_STARTED: Final = ResponseState.STARTED
_STREAMING: Final = ResponseState.STREAMING
_DONE: Final = ResponseState.DONE
_LENGTH: Final = Framing.LENGTH

# A body at least this large is not copied into one buffer with its head: on_send returns the
# pieces (see Output), which the runtime writes as one vector where the loop's writelines is a
# writev (uvloop; elsewhere it joins them). Below it the copy is as cheap as the vector; from
# here on the vector wins (uvloop on a socket, head + body: 1.9 against 1.4-1.6 us at 4 KiB,
# 3.4 against 2.2-2.4 at 16 KiB; a 64 KiB response 17.7 -> 16.5 us of server CPU, `make bench`
# big-64k). A chunked body is still copied into its chunk (framing.CHUNKED in _frame).
VECTOR_LIMIT: Final = 4 * 1024

# What on_send returns: the bytes to write, or, for a body of VECTOR_LIMIT bytes or more, the
# pieces to write together, in order (never empty pieces).
Output: TypeAlias = bytes | list[bytes]


def output_size(data: Output) -> int:
    """How many bytes ``data`` holds, pieces or not."""
    if isinstance(data, list):
        return sum(len(piece) for piece in data)
    return len(data)


# False: the common whole-body response is framed by _head and _frame like every other, not by
# the one-formatting-operation shortcut in on_send (the wire tests run both ways and expect the
# same bytes, as the WebSocket framing shortcut's tests do). A module global, not a class
# attribute: a compiled class's attributes cannot be set.
WHOLE_BODY_SHORTCUT = True


# The runtime's ASGICycle extends this class: compiled (appserver._accel), it must allow that.
@mypyc_attr(allow_interpreted_subclasses=True)
class RequestCycle:
    """One request and its response. See the module docstring for the calling contract."""

    __slots__ = (
        "_app_chunked",
        "_app_close",
        "_chunks",
        "_content_length",
        "_continue_pending",
        "_encoded_headers",
        "_final_delivered",
        "_framing",
        "_overrides",
        "_remaining",
        "_status_line",
        "_whole_body_plain",
        "buffered",
        "defaults",
        "disconnected",
        "head_request",
        "http_version",
        "keep_alive",
        "request_complete",
        "response_state",
        "scope",
        "status",
        "upgrade",
    )

    def __init__(
        self,
        conn: ConnectionInfo,
        method: bytes,
        target: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """Build the ASGI scope. ``headers`` must have lower-cased names. Raises ProtocolError."""
        path, raw_path, query = split_target(target)
        connection_close = False
        expect_continue = False
        upgrade: bytes | None = None
        connection_upgrade = False
        proxied: list[tuple[bytes, bytes]] | None = None  # X-Forwarded-*, Forwarded
        # One pass over the headers for everything the cycle needs to know; a set lookup
        # skips the headers it does not care about (most of them).
        for name, value in headers:
            if name not in _CYCLE_HEADERS:
                continue
            if name == b"connection":
                tokens = value.lower()
                connection_close = connection_close or b"close" in tokens
                connection_upgrade = connection_upgrade or b"upgrade" in tokens
            elif name == b"expect":
                expect_continue = value.lower() == b"100-continue"
            elif name == b"upgrade":
                upgrade = value.lower()
            elif name == b"proxy-connection":
                # Not a standard field, but clients send it and llhttp closes on it: so do we,
                # on both parsers.
                connection_close = connection_close or b"close" in value.lower()
            elif proxied is None:
                proxied = [(name, value)]
            else:
                proxied.append((name, value))

        client = conn.client
        scheme = conn.scheme
        server = conn.server
        if proxied is not None and conn.proxy is not None:
            client, scheme, server, headers = apply_forwarded(
                conn.proxy, proxied, client, scheme, server, headers
            )

        root_path = conn.root_path
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": ASGI_VERSIONS,
            "http_version": http_version,
            "server": server,
            "client": client,
            "scheme": scheme,
            "method": method.decode("ascii"),
            "root_path": root_path,
            # ASGI 2.x: path and raw_path include root_path.
            "path": root_path + path if root_path else path,
            "raw_path": root_path.encode("latin-1") + raw_path if root_path else raw_path,
            "query_string": query,
            "headers": headers,
            "state": conn.app_state.copy(),
        }
        if conn.extensions is not None:
            self.scope["extensions"] = conn.extensions.copy()
        self.defaults = conn.defaults
        self.http_version = http_version
        self.head_request = method == b"HEAD"
        self.keep_alive = request_keeps_alive(http_version, connection_close)
        self.upgrade = upgrade if connection_upgrade else None
        self._continue_pending = expect_continue and http_version == "1.1"
        self._chunks: list[bytes] | tuple[()] = ()  # a list once body bytes arrive
        self.buffered = 0
        self.request_complete = False
        self._final_delivered = False
        self.disconnected = False
        self.response_state = _WAITING
        self.status = 0
        # The response-side slots (_status_line, _encoded_headers, _content_length, _app_chunked,
        # _app_close, _overrides, _framing, _remaining) are first set by on_send: they are never
        # read before http.response.start, and setting them here costs every request.

    # --- request side: fed by the runtime -------------------------------------------------------
    def feed_body(self, data: bytes) -> None:
        if self.response_state is not _DONE:
            if self._chunks:
                self._chunks.append(data)
            else:
                self._chunks = [data]
            self.buffered += len(data)

    def end_request(self) -> None:
        self.request_complete = True

    def disconnect(self) -> None:
        self.disconnected = True

    def take_continue(self) -> bytes:
        """``100 Continue`` the first time the app asks for a body the client is holding back.

        RFC 9110 §10.1.1: the client waits for it before sending the body; sending it only
        when the app reads means an app that answers first never invites an unwanted upload.
        """
        if self._continue_pending and not self.request_complete and self.response_state is _WAITING:
            self._continue_pending = False
            return CONTINUE_100
        return b""

    def next_event(self) -> dict[str, Any] | None:
        """The next ``receive()`` message, or None when there is nothing yet."""
        if self.disconnected or self.response_state is _DONE:
            return {"type": "http.disconnect"}
        if self._final_delivered:
            return None
        chunks = self._chunks
        if chunks or self.request_complete:
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self._chunks = ()
            self.buffered = 0
            more_body = not self.request_complete
            self._final_delivered = not more_body
            return {"type": "http.request", "body": body, "more_body": more_body}
        return None

    # --- response side: driven by the app -------------------------------------------------------
    def on_send(self, message: Any) -> Output:
        """Check one ASGI message against the response state; return what to write (bytes, or
        a big body's pieces: see :data:`Output`)."""
        try:
            message_type = message["type"]
        except (TypeError, KeyError):
            raise ProtocolError(f"ASGI message without a type: {message!r}") from None
        if self.disconnected:
            raise ClientDisconnected("the client closed the connection")
        state = self.response_state
        if state is _WAITING:
            if message_type != "http.response.start":
                raise ProtocolError(f"expected 'http.response.start', got {message_type!r}")
            status = message.get("status")
            if type(status) is not int:
                raise ProtocolError(f"response status must be an int, got {status!r}")
            self._status_line = status_line(status)
            (
                self._encoded_headers,
                self._content_length,
                self._app_chunked,
                self._app_close,
                self._overrides,
            ) = scan_headers(message.get("headers", ()))
            self.status = status
            if self._app_close:
                self.keep_alive = False
            # Whether a body sent whole (one message) gets the plain Content-Length framing
            # _head would choose: decided once here, by the same pure function.
            self._whole_body_plain = (
                WHOLE_BODY_SHORTCUT
                and not self._overrides
                and response_framing(
                    status, self.head_request, self._content_length, True, self.http_version
                )
                is _LENGTH
            )
            self.response_state = _STARTED
            return b""
        if message_type != "http.response.body" or state is _DONE:
            if state is _DONE:
                raise ProtocolError(
                    f"unexpected {message_type!r}: the response is already complete"
                )
            raise ProtocolError(f"expected 'http.response.body', got {message_type!r}")
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        if type(body) is not bytes:
            if not isinstance(body, (bytearray, memoryview)):
                raise ProtocolError(f"response body must be bytes, got {type(body).__name__}")
            body = bytes(body)
        if state is _STARTED:
            if (
                not more_body
                and self._whole_body_plain
                and self.keep_alive
                and self.request_complete
            ):
                # The most common response: head and whole body in one formatting operation.
                # Equivalent to _head + _frame for Framing.LENGTH on a persistent connection;
                # a body that breaks the app's Content-Length takes that path to its error.
                content_length = self._content_length
                size = len(body)
                if content_length is None or content_length == size:
                    self.response_state = _DONE
                    if size >= VECTOR_LIMIT:  # the head alone, the body beside it (Output)
                        end = (
                            b"\r\n"
                            if content_length is not None
                            else b"content-length: %d\r\n\r\n" % size
                        )
                        head = b"%s%s%s%s" % (
                            self._status_line,
                            self.defaults.encoded,
                            self._encoded_headers,
                            end,
                        )
                        return [head, body]
                    if content_length is None:
                        return b"%s%s%scontent-length: %d\r\n\r\n%s" % (
                            self._status_line,
                            self.defaults.encoded,
                            self._encoded_headers,
                            size,
                            body,
                        )
                    return b"%s%s%s\r\n%s" % (
                        self._status_line,
                        self.defaults.encoded,
                        self._encoded_headers,
                        body,
                    )
            head = self._head(len(body), more_body)
            # _frame raises before changing state: a body that breaks its Content-Length
            # leaves the response unwritten, so fail() can still answer 500.
            data = self._frame(body, more_body)
            if self.response_state is _STARTED:
                self.response_state = _STREAMING
            if not data:
                return head
            return [head, data] if len(data) >= VECTOR_LIMIT else head + data
        return self._frame(body, more_body)

    def start_streaming(self) -> bytes:
        """Write the held-back head now, framed for a body still to come."""
        if self.response_state is not _STARTED:
            return b""
        self.response_state = _STREAMING
        return self._head(0, True)

    def _head(self, first_length: int, more_body: bool) -> bytes:
        content_length = self._content_length
        framing = response_framing(
            self.status, self.head_request, content_length, not more_body, self.http_version
        )
        self._framing = framing
        if not self.request_complete:
            # The app answers before the whole request arrived. Reading and discarding an upload
            # of unknown size is a gift to attackers; close instead, and say so up front so that
            # pooled clients do not reuse the connection.
            self.keep_alive = False
        app_close = self._app_close
        encoded = self._encoded_headers
        defaults = (
            self.defaults.without(self._overrides) if self._overrides else self.defaults.encoded
        )
        if framing is _LENGTH and content_length is None:
            self._remaining = first_length
            if self.keep_alive or app_close:
                # The common case, in one formatting operation.
                return b"%s%s%scontent-length: %d\r\n\r\n" % (
                    self._status_line,
                    defaults,
                    encoded,
                    first_length,
                )
            framing_line = b"content-length: %d\r\n" % first_length
        elif framing is _LENGTH:
            self._remaining = content_length  # type: ignore[assignment]
            framing_line = b""
        elif framing is Framing.CHUNKED:
            framing_line = b"transfer-encoding: chunked\r\n"
        elif framing is Framing.CLOSE:
            self.keep_alive = False
            framing_line = b""
        elif self.head_request and self.status >= 200 and self.status not in (204, 304):
            # No body, but the head a GET would have got (RFC 9110 §9.3.2).
            if self._app_chunked:
                framing_line = b"transfer-encoding: chunked\r\n"
            elif content_length is None and not more_body:
                framing_line = b"content-length: %d\r\n" % first_length
            else:
                framing_line = b""
        else:
            framing_line = b""
        close_line = b"" if self.keep_alive or app_close else b"connection: close\r\n"
        return b"%s%s%s%s%s\r\n" % (
            self._status_line,
            defaults,
            encoded,
            framing_line,
            close_line,
        )

    def _frame(self, body: bytes, more_body: bool) -> bytes:
        framing = self._framing
        if framing is _LENGTH:
            # Check before marking the response done: a response cut short or overrun is not
            # complete, and the connection it was written on must close (see fail()).
            remaining = self._remaining - len(body)
            if remaining < 0:
                raise ProtocolError("response body longer than its Content-Length")
            if not more_body and remaining:
                raise ProtocolError("response body shorter than its Content-Length")
            self._remaining = remaining
            if not more_body:
                self.response_state = _DONE
            return body
        if not more_body:
            self.response_state = _DONE
        if framing is Framing.CHUNKED:
            if body:
                chunk = b"%x\r\n%s\r\n" % (len(body), body)
                return chunk if more_body else chunk + b"0\r\n\r\n"
            return b"" if more_body else b"0\r\n\r\n"
        if framing is Framing.CLOSE:
            return body
        return b""  # Framing.NO_BODY: HEAD, 1xx, 204, 304 drop what the app sends

    # --- ends ------------------------------------------------------------------------------------
    @property
    def response_started(self) -> bool:
        return self.response_state is not _WAITING

    @property
    def response_complete(self) -> bool:
        return self.response_state is _DONE

    def fail(self) -> bytes | None:
        """The app failed. Return a 500 to write if nothing was written yet, else None.

        None means the response is cut short: the connection must close, since the client can
        no longer tell where this response ends.
        """
        if self.response_state is _WAITING or self.response_state is _STARTED:
            self.response_state = _DONE
            self.keep_alive = False
            self.status = 500
            return simple_response(500, b"Internal Server Error", self.defaults.encoded)
        self.keep_alive = self.keep_alive and self.response_state is _DONE
        return None
