"""WebSocket echo load from a cheap client of our own: plain sockets and one selector.

Each connection does the HTTP/1.1 upgrade by hand (no extensions offered, so the server sends
plain frames), then keeps ``window`` masked 16-byte text frames in flight: the frames are built
once as bytes, sent in one write per refill, and echoes are counted by matching the server's
unmasked frames in the received byte stream. The cost per message on the client is a slice
comparison and a share of one send/recv, so the server, not the client, sets the rate.
"""

from __future__ import annotations

import base64
import hashlib
import os
import selectors
import socket
import struct
import time
from collections import deque
from typing import Any

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA
RECV_SIZE = 262144


class ProtocolError(Exception):
    pass


# --- pure helpers (tested) --------------------------------------------------------------------


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value a server must answer to ``key`` (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def handshake_request(host: str, port: int, key: str, path: str = "/") -> bytes:
    """An upgrade request offering no subprotocol and no extension."""
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode()


def check_handshake_response(head: bytes, key: str) -> None:
    """Raise ProtocolError unless ``head`` (up to the blank line) is a valid 101 for ``key``."""
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or status[1] != "101":
        raise ProtocolError(f"handshake refused: {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if headers.get("sec-websocket-accept") != accept_key(key):
        raise ProtocolError("bad Sec-WebSocket-Accept")
    if headers.get("upgrade", "").lower() != "websocket":
        raise ProtocolError("101 without Upgrade: websocket")
    if headers.get("sec-websocket-extensions"):
        raise ProtocolError(f"unrequested extension: {headers['sec-websocket-extensions']}")


def build_frame(payload: bytes, opcode: int = OP_TEXT, mask: bytes | None = None) -> bytes:
    """One final frame; masked (client to server) when ``mask`` (4 bytes) is given."""
    n = len(payload)
    first = 0x80 | opcode
    mask_bit = 0x80 if mask is not None else 0
    if n < 126:
        head = bytes((first, mask_bit | n))
    elif n < 65536:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if mask is None:
        return head + payload
    if len(mask) != 4:
        raise ValueError("mask must be 4 bytes")
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return head + mask + masked


def parse_frames(buf: bytes | bytearray) -> tuple[list[tuple[int, bytes]], int]:
    """Complete frames at the start of ``buf`` as (opcode, unmasked payload), and bytes used.

    A trailing partial frame is left for the next call. Frames from a server are unmasked,
    but a masked frame is unmasked too so the helper parses either direction.
    """
    frames: list[tuple[int, bytes]] = []
    pos, end = 0, len(buf)
    while end - pos >= 2:
        b0, b1 = buf[pos], buf[pos + 1]
        n = b1 & 0x7F
        at = pos + 2
        if n == 126:
            if end - at < 2:
                break
            (n,) = struct.unpack_from("!H", buf, at)
            at += 2
        elif n == 127:
            if end - at < 8:
                break
            (n,) = struct.unpack_from("!Q", buf, at)
            at += 8
        mask = None
        if b1 & 0x80:
            if end - at < 4:
                break
            mask = bytes(buf[at : at + 4])
            at += 4
        if end - at < n:
            break
        payload = bytes(buf[at : at + n])
        if mask is not None and n:
            key = (mask * (n // 4 + 1))[:n]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(
                n, "big"
            )
        if not b0 & 0x80:
            raise ProtocolError("fragmented frame (not expected from an echo of small messages)")
        frames.append((b0 & 0x0F, payload))
        pos = at + n
    return frames, pos


def weighted_percentile(samples: list[tuple[float, int]], pct: float) -> float:
    """Nearest-rank percentile of (value, count) samples, each counting ``count`` times."""
    if not samples:
        raise ValueError("percentile of no values")
    ordered = sorted(samples)
    total = sum(c for _, c in ordered)
    rank = max(1, -(-total * pct // 100))
    seen = 0
    for value, count in ordered:
        seen += count
        if seen >= rank:
            return value
    return ordered[-1][0]


# --- the load generator -----------------------------------------------------------------------


def connect(host: str, port: int, timeout: float = 10.0) -> socket.socket:
    """A blocking socket after a verified upgrade; raises ProtocolError or OSError."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(handshake_request(host, port, key))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise ProtocolError("connection closed during the handshake")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        check_handshake_response(head, key)
        if rest:
            raise ProtocolError("data before the first message")
    except BaseException:
        sock.close()
        raise
    return sock


class _Conn:
    __slots__ = ("batches", "buf", "closed", "inflight", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.inflight = 0
        self.batches: deque[list[Any]] = deque()  # [messages still due, send time]
        self.closed = False


def echo_load(
    port: int,
    connections: int,
    duration: float,
    size: int = 16,
    window: int = 8,
    host: str = "127.0.0.1",
    opcode: int = OP_TEXT,
) -> dict[str, Any]:
    """Messages/s, round-trip percentiles (ms, per send batch) and errors over the run."""
    if window < 1:
        raise ValueError("window must be >= 1")
    payload = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    frame = build_frame(payload, opcode, mask=os.urandom(4))
    reply = build_frame(payload, opcode)  # what the server sends back
    rlen = len(reply)
    out_run = [frame * k for k in range(window + 1)]
    in_run = [reply * k for k in range(window + 1)]

    conns = [_Conn(connect(host, port)) for _ in range(connections)]
    sel = selectors.DefaultSelector()
    for c in conns:
        c.sock.setblocking(False)
        sel.register(c.sock, selectors.EVENT_READ, c)

    messages = 0
    errors = 0
    samples: list[tuple[float, int]] = []
    perf = time.perf_counter
    started = perf()
    deadline = started + duration
    for c in conns:
        c.sock.sendall(out_run[window])  # a window of 16-byte frames fits the socket buffer
        c.inflight = window
        c.batches.append([window, started])
    live = len(conns)

    while live:
        events = sel.select(0.5)
        now = perf()
        if now >= deadline:
            break
        for key, _ in events:
            c = key.data
            try:
                data = c.sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                errors += 1
                c.closed = True
                sel.unregister(c.sock)
                live -= 1
                continue
            buf = c.buf + data if c.buf else data
            n = len(buf) // rlen
            if n > c.inflight:
                n = c.inflight
            if n and buf.startswith(in_run[n]):  # the fast path: n exact echoes
                done = n
                c.buf = buf[n * rlen :]
            else:
                try:
                    frames, used = parse_frames(buf)
                except ProtocolError:
                    errors += 1
                    c.closed = True
                    sel.unregister(c.sock)
                    live -= 1
                    continue
                c.buf = buf[used:]
                done = 0
                for op, body in frames:
                    if op == OP_PING:
                        c.sock.send(build_frame(body, OP_PONG, mask=os.urandom(4)))
                    elif op == OP_PONG:
                        pass
                    elif op == opcode and body == payload and c.inflight > done:
                        done += 1
                    else:  # a wrong echo, an unexpected close, or more echoes than sent
                        errors += 1
                        if op == OP_CLOSE:
                            c.closed = True
                if c.closed:
                    sel.unregister(c.sock)
                    live -= 1
                    continue
                if not done:
                    continue
            messages += done
            c.inflight -= done
            left = done
            batches = c.batches
            while left:
                batch = batches[0]
                if batch[0] <= left:
                    left -= batch[0]
                    samples.append((now - batch[1], batch[0]))
                    batches.popleft()
                else:
                    batch[0] -= left
                    samples.append((now - batch[1], left))
                    left = 0
            c.sock.send(out_run[done])  # tiny; the send buffer has room for a window
            c.inflight += done
            batches.append([done, now])
    elapsed = perf() - started

    _close_all(sel, conns)
    return {
        "messages": messages,
        "duration_s": elapsed,
        "rate": messages / elapsed if elapsed > 0 else 0.0,
        "p50_ms": weighted_percentile(samples, 50) * 1000 if samples else None,
        "p99_ms": weighted_percentile(samples, 99) * 1000 if samples else None,
        "error_count": errors,
        "window": window,
    }


def _close_all(sel: selectors.BaseSelector, conns: list[_Conn], timeout: float = 2.0) -> None:
    """Send a close frame (1000) on every connection, drain until the server closes, close."""
    close = build_frame(struct.pack("!H", 1000), OP_CLOSE, mask=os.urandom(4))
    waiting = 0
    for c in conns:
        if c.closed:
            continue
        try:
            c.sock.send(close)
            waiting += 1
        except OSError:
            c.closed = True
            sel.unregister(c.sock)
    end = time.perf_counter() + timeout
    while waiting and time.perf_counter() < end:
        for key, _ in sel.select(0.1):
            c = key.data
            try:
                data = c.sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:  # the server closed its side after the closing handshake
                sel.unregister(c.sock)
                c.closed = True
                waiting -= 1
    sel.close()
    for c in conns:
        c.sock.close()
