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


def test_x_forwarded_host_and_port_are_not_read_unless_asked() -> None:
    # nginx's usual proxy_set_header lines pass a client's X-Forwarded-Host on untouched.
    got = ask(request("X-Forwarded-Host: evil.example", "X-Forwarded-Port: 8443"))
    assert got["host"] == "inner:8000" and got["server"][0] == "127.0.0.1"


def test_x_forwarded_host_and_port_from_a_trusted_proxy() -> None:
    got = ask(request(
        "X-Forwarded-For: 198.51.100.9", "X-Forwarded-Proto: https",
        "X-Forwarded-Host: shop.example", "X-Forwarded-Port: 8443",
    ), forwarded_host=True)  # fmt: skip
    assert got["client"] == ["198.51.100.9", 0] and got["scheme"] == "https"
    assert got["host"] == "shop.example:8443" and got["hosts"] == ["shop.example:8443"]
    assert got["server"] == ["shop.example", 8443]


def test_the_default_port_of_the_scheme_is_left_out_of_host() -> None:
    got = ask(
        request("X-Forwarded-Proto: https", "X-Forwarded-Host: shop.example"),
        forwarded_host=True,
    )
    assert got["host"] == "shop.example" and got["server"] == ["shop.example", 443]


def test_a_forwarded_host_that_is_not_a_host_is_ignored() -> None:
    got = ask(request("X-Forwarded-Host: evil.example/path@x"), forwarded_host=True)
    assert got["host"] == "inner:8000"


@pytest.mark.parametrize("header", [b"X-Forwarded-Port: \xb2", b"X-Forwarded-Host: a:\xb2"])
def test_a_port_that_is_not_ascii_digits_is_ignored(http: str, header: bytes) -> None:
    # b"\xb2" is "\u00b2" (superscript two) in latin-1: str.isdigit() says yes, int() raises.
    raw = b"GET / HTTP/1.1\r\nHost: inner:8000\r\n" + header + b"\r\nConnection: close\r\n\r\n"

    async def main() -> bytes:
        async with serve(scope_echo, http, forwarded_host=True) as (_, port):
            data, _ = await exchange(port, raw)
            return data

    data = run(main())
    assert data.startswith(b"HTTP/1.1 ")  # an answer, not a dropped connection
    if data.startswith(b"HTTP/1.1 200 "):
        assert answer(data)["host"] in ("inner:8000", "a")  # the "port" was not taken


@pytest.mark.parametrize(
    "nearest", ["for=unknown", "for=_hidden", "proto=https"]
)  # fmt: skip
def test_a_forwarded_element_without_an_address_stops_the_walk(nearest: str) -> None:
    # The client claims for=1.2.3.4; the proxy adds an element whose address it hides (or
    # none): nobody vouched for the claim, so the peer's own address stands.
    got = ask(
        request(f"Forwarded: for=1.2.3.4, {nearest}"),
        forwarded_headers="forwarded",
    )
    assert got["client"][0] == "127.0.0.1"


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
async def proxied_server(bind: str | None = None, **config: Any) -> AsyncIterator[int]:
    """A server whose one listener reads PROXY headers, on a free port (yielded) or on
    ``bind`` (a unix: path; 0 is yielded)."""
    port = 0
    if bind is None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    cfg = Config(
        app=scope_echo,
        listeners=[{"bind": bind or f"127.0.0.1:{port}", "proxy_protocol": True}],
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


def test_the_proxy_protocol_works_with_the_operations_side() -> None:
    # The PROXY reader and the instrumented protocol are both bases of one class.
    async def main() -> tuple[bytes, bytes]:
        async with proxied_server(health_path="/healthz", metrics_path="/metrics") as port:
            preamble = b"PROXY TCP4 203.0.113.5 192.0.2.1 51000 443\r\n"
            health, _ = await exchange(
                port, preamble + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            scrape, _ = await exchange(
                port, preamble + b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            return health, scrape

    health, scrape = run(main())
    assert health.startswith(b"HTTP/1.1 200 ") and health.endswith(b"ok\n")
    received = [line for line in scrape.split(b"\n") if line.startswith(b"appserver_received")]
    assert received and float(received[0].split()[-1]) > 0


def test_proxy_protocol_with_tls_is_refused() -> None:
    from appserver.errors import ConfigError

    with pytest.raises(ConfigError, match="proxy_protocol with tls is not supported"):
        Config(
            app=scope_echo,
            listeners=[{"bind": "127.0.0.1:0", "proxy_protocol": True, "tls": {"certfile": "c"}}],
        )


def test_a_unix_socket_listener_takes_the_header_from_whoever_may_open_it(tmp_path: Any) -> None:
    path = str(tmp_path / "s.sock")

    async def main() -> dict[str, Any]:
        async with proxied_server(f"unix:{path}"):
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b"PROXY TCP4 203.0.113.5 192.0.2.1 51000 443\r\n" + request())
            data, _ = await read_until_close(reader, 2.0)
            writer.close()
            return answer(data)

    assert run(main())["client"] == ["203.0.113.5", 51000]


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
