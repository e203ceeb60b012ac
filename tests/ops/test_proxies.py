"""Trusted proxies: X-Forwarded-* (with -Host and -Port), RFC 7239 Forwarded, the one-family
policy against smuggling, and the PROXY protocol v1/v2 with raw headers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from appserver import Config, Server
from tests.conftest import exchange, read_until_close, run, serve
from tests.ops.apps import scope_echo


def request(*headers: str) -> bytes:
    lines = ["GET / HTTP/1.1", "Host: inner:8000", *headers, "Connection: close", "", ""]
    return "\r\n".join(lines).encode()


def answer(data: bytes) -> dict[str, Any]:
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data
    found: dict[str, Any] = json.loads(body)
    return found


def ask(raw: bytes, **config: Any) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with serve(scope_echo, "httptools", **config) as (_, port):
            data, _ = await exchange(port, raw)
            return answer(data)

    return run(main())


def test_x_forwarded_host_and_port_from_a_trusted_proxy() -> None:
    got = ask(request(
        "X-Forwarded-For: 198.51.100.9", "X-Forwarded-Proto: https",
        "X-Forwarded-Host: shop.example", "X-Forwarded-Port: 8443",
    ))  # fmt: skip
    assert got["client"] == ["198.51.100.9", 0] and got["scheme"] == "https"
    assert got["host"] == "shop.example:8443" and got["hosts"] == ["shop.example:8443"]
    assert got["server"] == ["shop.example", 8443]


def test_the_default_port_of_the_scheme_is_left_out_of_host() -> None:
    got = ask(request("X-Forwarded-Proto: https", "X-Forwarded-Host: shop.example"))
    assert got["host"] == "shop.example" and got["server"] == ["shop.example", 443]


def test_a_forwarded_host_that_is_not_a_host_is_ignored() -> None:
    got = ask(request("X-Forwarded-Host: evil.example/path@x"))
    assert got["host"] == "inner:8000"


def test_an_untrusted_peer_is_not_believed() -> None:
    got = ask(
        request("X-Forwarded-For: 198.51.100.9", "X-Forwarded-Host: shop.example",
                "Forwarded: for=198.51.100.10;proto=https"),
        forwarded_allow_ips=["10.1.2.3"],
    )  # fmt: skip
    assert got["client"][0] == "127.0.0.1" and got["scheme"] == "http"
    assert got["host"] == "inner:8000"


def test_rfc_7239_forwarded_when_the_proxy_sets_it() -> None:
    got = ask(
        request('Forwarded: for=198.51.100.7, for="[2001:db8::1]:4711";proto=https;host="a.example"'),
        forwarded_headers="forwarded",
        forwarded_allow_ips=["127.0.0.1", "2001:db8::1"],
    )  # fmt: skip
    # 2001:db8::1 is a trusted proxy: the client is the address left of it.
    assert got["client"] == ["198.51.100.7", 0] and got["scheme"] == "https"
    assert got["host"] == "a.example"


def test_a_client_cannot_smuggle_through_the_family_the_proxy_does_not_set() -> None:
    # nginx appends X-Forwarded-For and passes Forwarded on untouched: Forwarded is the client's.
    got = ask(request(
        "Forwarded: for=10.9.9.9;proto=https;host=admin.example",
        "X-Forwarded-For: 198.51.100.9",
    ))  # fmt: skip
    assert got["client"] == ["198.51.100.9", 0] and got["scheme"] == "http"
    assert got["host"] == "inner:8000"
    # And the other way round: a Forwarded proxy passes X-Forwarded-* on untouched.
    got = ask(
        request("Forwarded: for=198.51.100.7", "X-Forwarded-For: 10.9.9.9",
                "X-Forwarded-Proto: https"),
        forwarded_headers="forwarded",
    )  # fmt: skip
    assert got["client"] == ["198.51.100.7", 0] and got["scheme"] == "http"


# --- the PROXY protocol ------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def proxied_server(**config: Any) -> AsyncIterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = Config(
        app=scope_echo,
        listeners=[{"bind": f"127.0.0.1:{port}", "proxy_protocol": True}],
        log_config=None,
        lifespan="off",
        **config,
    )
    cfg.load()
    server = Server(cfg)
    await server.startup()
    assert server.started
    try:
        yield port
    finally:
        await server.shutdown()


def v2(command: int, family: int, body: bytes) -> bytes:
    signature = b"\r\n\r\n\x00\r\nQUIT\n"
    return signature + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


V2_TCP4 = v2(
    1,
    0x11,
    socket.inet_aton("203.0.113.5")
    + socket.inet_aton("192.0.2.1")
    + struct.pack("!HH", 51000, 443)
    + b"\x03\x00\x04abcd",
)  # a TLV, skipped
V2_TCP6 = v2(
    1,
    0x21,
    socket.inet_pton(socket.AF_INET6, "2001:db8::5")
    + socket.inet_pton(socket.AF_INET6, "2001:db8::1")
    + struct.pack("!HH", 6000, 80),
)


@pytest.mark.parametrize(
    ("preamble", "client", "server"),
    [
        (b"PROXY TCP4 203.0.113.5 192.0.2.1 51000 443\r\n", ["203.0.113.5", 51000],
         ["192.0.2.1", 443]),
        (b"PROXY TCP6 2001:db8::5 2001:db8::1 6000 80\r\n", ["2001:db8::5", 6000],
         ["2001:db8::1", 80]),
        (V2_TCP4, ["203.0.113.5", 51000], ["192.0.2.1", 443]),
        (V2_TCP6, ["2001:db8::5", 6000], ["2001:db8::1", 80]),
    ],
)  # fmt: skip
def test_the_proxy_header_gives_the_client_address(
    preamble: bytes, client: list[Any], server: list[Any]
) -> None:
    async def main() -> dict[str, Any]:
        async with proxied_server() as port:
            data, _ = await exchange(port, preamble + request())
            return answer(data)

    got = run(main())
    assert got["client"] == client and got["server"] == server


@pytest.mark.parametrize(
    "preamble", [b"PROXY UNKNOWN\r\n", v2(0, 0x00, b""), v2(1, 0x00, b"")]
)  # fmt: skip
def test_local_and_unknown_keep_the_connections_own_address(preamble: bytes) -> None:
    async def main() -> dict[str, Any]:
        async with proxied_server() as port:
            data, _ = await exchange(port, preamble + request())
            return answer(data)

    assert run(main())["client"][0] == "127.0.0.1"


def test_the_header_may_arrive_in_pieces() -> None:
    async def main() -> dict[str, Any]:
        async with proxied_server() as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for i in range(0, len(V2_TCP4), 5):
                writer.write(V2_TCP4[i : i + 5])
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(request())
            data, _ = await read_until_close(reader, 2.0)
            writer.close()
            return answer(data)

    assert run(main())["client"] == ["203.0.113.5", 51000]


@pytest.mark.parametrize(
    "raw",
    [
        request(),  # no header at all: HTTP straight away
        b"PROXY TCP4 203.0.113.5 192.0.2.1 51000\r\n" + request(),  # a field missing
        b"PROXY TCP4 2001:db8::5 192.0.2.1 1 2\r\n" + request(),  # family mismatch
        b"PROXY TCP4 203.0.113.5 192.0.2.1 99999 2\r\n" + request(),  # port out of range
        b"PROXY " + b"X" * 200 + b"\r\n",  # longer than 107 bytes
        v2(1, 0x11, b"\x01\x02") + request(),  # truncated addresses
        b"\r\n\r\n\x00\r\nQUIT\n\x10\x11\x00\x00",  # version 1 in a v2 header
    ],
)
def test_a_missing_or_malformed_header_closes_the_connection(raw: bytes) -> None:
    async def main() -> tuple[bytes, bool]:
        async with proxied_server() as port:
            return await exchange(port, raw, timeout=2.0)

    data, closed = run(main())
    assert data == b"" and closed


def test_only_trusted_peers_may_send_a_proxy_header() -> None:
    async def main() -> tuple[bytes, bool]:
        async with proxied_server(forwarded_allow_ips=["10.0.0.1"]) as port:
            raw = b"PROXY TCP4 203.0.113.5 192.0.2.1 51000 443\r\n" + request()
            return await exchange(port, raw, timeout=2.0)

    data, closed = run(main())
    assert data == b"" and closed


def test_x_forwarded_from_behind_a_proxy_header_needs_the_client_to_be_trusted() -> None:
    # The load balancer (127.0.0.1) is trusted; the client it names is not, so the client's
    # own X-Forwarded-For is not believed.
    async def main() -> dict[str, Any]:
        async with proxied_server() as port:
            raw = b"PROXY TCP4 203.0.113.5 192.0.2.1 51000 443\r\n" + request(
                "X-Forwarded-For: 10.0.0.66"
            )
            data, _ = await exchange(port, raw)
            return answer(data)

    assert run(main())["client"] == ["203.0.113.5", 51000]
