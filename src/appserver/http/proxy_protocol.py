"""The PROXY protocol preamble, versions 1 and 2 (HAProxy's specification, proxy-protocol.txt).

A load balancer that passes TCP through (HAProxy, AWS NLB, many cloud LBs) starts each
connection with one header saying whom it accepted the connection from, before any byte of
HTTP. Sans-IO: :func:`parse_preamble` takes the bytes received so far and says "need more",
"here is the header and where HTTP begins", or raises :class:`ProxyProtocolError`.

Version 1 is one text line, at most 107 bytes with its CRLF:
``PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\\r\\n`` (or TCP6, or ``UNKNOWN``).
Version 2 is binary: a 12-byte signature, version/command, family/transport, a 16-bit length,
the addresses, then TLVs (skipped here). ``LOCAL`` (a health check from the proxy itself) and
``UNKNOWN``/``UNSPEC`` carry no client: the connection's own addresses stand.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX = 107  # the specification's bound, CRLF included
# Addresses plus TLVs: a proxy sends a few hundred bytes at most; more is not a proxy.
V2_MAX_BODY = 2048


class ProxyProtocolError(ValueError):
    """The connection does not start with a valid PROXY header."""


@dataclass(frozen=True)
class Preamble:
    """What the proxy said: the client and the address it connected to (None: keep the
    connection's own, for LOCAL and UNKNOWN)."""

    client: tuple[str, int] | None
    server: tuple[str, int] | None
    version: int


def parse_preamble(data: bytes) -> tuple[Preamble, int] | None:
    """The header at the start of ``data`` and its length, or None when more bytes are
    needed. Raises ProxyProtocolError when ``data`` cannot start a PROXY header."""
    if data[:1] == b"\r":
        return _parse_v2(data)
    if data[:1] == b"P":
        return _parse_v1(data)
    if data:
        raise ProxyProtocolError("expected a PROXY protocol header")
    return None


def _parse_v1(data: bytes) -> tuple[Preamble, int] | None:
    if not V1_PREFIX.startswith(data[: len(V1_PREFIX)]):
        raise ProxyProtocolError("expected a PROXY protocol header")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyProtocolError("PROXY v1 line longer than 107 bytes")
        return None
    parts = data[len(V1_PREFIX) : end].split(b" ")
    size = end + 2
    if parts[0] == b"UNKNOWN":
        return Preamble(None, None, 1), size
    if parts[0] not in (b"TCP4", b"TCP6") or len(parts) != 5:
        raise ProxyProtocolError("malformed PROXY v1 line")
    family = 4 if parts[0] == b"TCP4" else 6
    try:
        source = _address(parts[1].decode("ascii"), family)
        destination = _address(parts[2].decode("ascii"), family)
        ports = [_port(p) for p in parts[3:5]]
    except (UnicodeDecodeError, ValueError):
        raise ProxyProtocolError("malformed PROXY v1 addresses") from None
    return Preamble((source, ports[0]), (destination, ports[1]), 1), size


def _parse_v2(data: bytes) -> tuple[Preamble, int] | None:
    if not V2_SIGNATURE.startswith(data[: len(V2_SIGNATURE)]):
        raise ProxyProtocolError("expected a PROXY protocol header")
    if len(data) < 16:
        return None
    version_command, family_transport, length = (
        data[12],
        data[13],
        struct.unpack("!H", data[14:16])[0],
    )
    if version_command >> 4 != 2:
        raise ProxyProtocolError(f"unsupported PROXY protocol version {version_command >> 4}")
    command = version_command & 0x0F
    if command not in (0, 1):
        raise ProxyProtocolError(f"unknown PROXY v2 command {command}")
    if length > V2_MAX_BODY:
        raise ProxyProtocolError(f"PROXY v2 header of {length} bytes is too long")
    size = 16 + length
    if len(data) < size:
        return None
    if command == 0:  # LOCAL: the proxy's own connection (a health check)
        return Preamble(None, None, 2), size
    family = family_transport >> 4
    body = data[16:size]
    src: ipaddress.IPv4Address | ipaddress.IPv6Address
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    if family == 1:  # AF_INET
        if length < 12:
            raise ProxyProtocolError("PROXY v2 IPv4 addresses truncated")
        src, dst = ipaddress.IPv4Address(body[0:4]), ipaddress.IPv4Address(body[4:8])
        sport, dport = struct.unpack("!HH", body[8:12])
    elif family == 2:  # AF_INET6
        if length < 36:
            raise ProxyProtocolError("PROXY v2 IPv6 addresses truncated")
        src, dst = ipaddress.IPv6Address(body[0:16]), ipaddress.IPv6Address(body[16:32])
        sport, dport = struct.unpack("!HH", body[32:36])
    else:  # UNSPEC or AF_UNIX: no address to report
        return Preamble(None, None, 2), size
    return Preamble((str(src), sport), (str(dst), dport), 2), size


def _address(text: str, family: int) -> str:
    address = ipaddress.ip_address(text)
    if address.version != family:
        raise ValueError(text)
    return str(address)


def _port(raw: bytes) -> int:
    if not raw.isdigit() or len(raw) > 5 or (len(raw) > 1 and raw[:1] == b"0"):
        raise ValueError(raw)
    port = int(raw)
    if port > 65535:
        raise ValueError(raw)
    return port
