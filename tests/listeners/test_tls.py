"""TLS with real certificates (trustme): HTTPS, the ASGI TLS extension, mutual TLS, wss://,
and every bad certificate or key refused before the app starts, naming the listener."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from appserver import Config, Server
from appserver.errors import StartupError
from tests.conftest import run
from tests.listeners.certs import Certs, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Certs]:
    yield make_certs(tmp_path_factory.mktemp("certs"))


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": scope["scheme"]})
        await send({"type": "websocket.close"})
        return
    tls = scope.get("extensions", {}).get("tls")
    body = repr({"scheme": scope["scheme"], "tls": tls}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def serving(**kw: Any) -> AsyncIterator[tuple[Server, list[int]]]:
    """A real server from these settings; yields it and the port of each listener."""
    kw.setdefault("log_config", None)
    config = Config(app=app, lifespan="off", **kw)
    config.load()
    server = Server(config)
    await server.startup()
    assert server.started
    ports = [s.sockets[0].getsockname()[1] for s in server.servers]
    try:
        yield server, ports
    finally:
        server.should_exit = True
        await server.shutdown()


def client_context(certs: Certs, *, client: bool = False, ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca or certs.ca_pem))
    if client:
        context.load_cert_chain(str(certs.client_cert))
    return context


async def get(port: int, context: ssl.SSLContext) -> dict[str, Any]:
    async with httpx.AsyncClient(verify=context) as client:
        response = await client.get(f"https://127.0.0.1:{port}/")
    assert response.status_code == 200
    return eval(response.text)


def tls_listener(certs: Certs, **tls: Any) -> dict[str, Any]:
    return {
        "bind": "127.0.0.1:0",
        "tls": {"certfile": str(certs.cert), "keyfile": str(certs.key), **tls},
    }


def test_flat_uvicorn_keywords_serve_https(certs: Certs) -> None:
    async def main() -> dict[str, Any]:
        async with serving(port=0, ssl_certfile=str(certs.cert), ssl_keyfile=str(certs.key)) as (
            _,
            ports,
        ):
            return await get(ports[0], client_context(certs))

    seen = run(main())
    assert seen["scheme"] == "https"
    tls = seen["tls"]
    assert tls["tls_version"] in (0x0303, 0x0304)
    assert isinstance(tls["cipher_suite"], int) and tls["cipher_suite"] > 0
    assert tls["server_cert"] == certs.cert.read_text().split("-----END CERTIFICATE-----")[0] + (
        "-----END CERTIFICATE-----\n"
    )
    assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None
    assert tls["client_cert_error"] is None


def test_plain_http_has_no_tls_extension(certs: Certs) -> None:
    async def main() -> str:
        async with serving(port=0) as (_, ports), httpx.AsyncClient() as client:
            return (await client.get(f"http://127.0.0.1:{ports[0]}/")).text

    assert eval(run(main())) == {"scheme": "http", "tls": None}


def test_mutual_tls_required(certs: Certs) -> None:
    listener = tls_listener(certs, ca_certs=str(certs.ca_pem), client_certs="required")

    async def main() -> tuple[dict[str, Any], BaseException | None]:
        async with serving(listeners=[listener]) as (_, ports):
            seen = await get(ports[0], client_context(certs, client=True))
            refused = None
            try:
                await get(ports[0], client_context(certs))
            except (httpx.TransportError, ssl.SSLError) as exc:
                refused = exc
            return seen, refused

    seen, refused = run(main())
    assert seen["tls"]["client_cert_name"] == certs.client_name
    chain = seen["tls"]["client_cert_chain"]
    assert len(chain) == 1 and chain[0].startswith("-----BEGIN CERTIFICATE-----")
    assert refused is not None, "a client without a certificate was served"


def test_mutual_tls_optional(certs: Certs) -> None:
    listener = tls_listener(certs, ca_certs=str(certs.ca_pem), client_certs="optional")

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        async with serving(listeners=[listener]) as (_, ports):
            with_cert = await get(ports[0], client_context(certs, client=True))
            without = await get(ports[0], client_context(certs))
            return with_cert, without

    with_cert, without = run(main())
    assert with_cert["tls"]["client_cert_name"] == certs.client_name
    assert without["tls"]["client_cert_chain"] == [] and without["tls"]["client_cert_name"] is None


def test_a_client_trusting_another_ca_fails_the_handshake(certs: Certs, tmp_path: Path) -> None:
    other = make_certs(tmp_path)

    async def main() -> None:
        async with serving(listeners=[tls_listener(certs)]) as (_, ports):
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await get(ports[0], client_context(certs, ca=other.ca_pem))
            # and the server goes on serving
            assert (await get(ports[0], client_context(certs)))["scheme"] == "https"

    run(main())


def test_plain_http_on_a_tls_port_costs_nothing_but_that_connection(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> tuple[bytes, dict[str, Any]]:
        async with serving(listeners=[tls_listener(certs)]) as (_, ports):
            reader, writer = await asyncio.open_connection("127.0.0.1", ports[0])
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return answer, await get(ports[0], client_context(certs))

    with caplog.at_level(logging.DEBUG):
        answer, after = run(main())
    assert not answer.startswith(b"HTTP/1.1 200")
    assert after["scheme"] == "https"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_wss(certs: Certs) -> None:
    async def main() -> str:
        async with (
            serving(listeners=[tls_listener(certs)]) as (_, ports),
            websockets.connect(f"wss://127.0.0.1:{ports[0]}/", ssl=client_context(certs)) as ws,
        ):
            return str(await ws.recv())

    assert run(main()) == "wss"


def test_alpn_offers_http_1_1(certs: Certs) -> None:
    async def main() -> str | None:
        async with serving(listeners=[tls_listener(certs)]) as (_, ports):
            context = client_context(certs)
            context.set_alpn_protocols(["h2", "http/1.1"])
            _, writer = await asyncio.open_connection("127.0.0.1", ports[0], ssl=context)
            chosen = writer.get_extra_info("ssl_object").selected_alpn_protocol()
            writer.close()
            return chosen

    assert run(main()) == "http/1.1"


def test_plain_and_tls_listeners_side_by_side(certs: Certs) -> None:
    async def main() -> tuple[str, dict[str, Any]]:
        listeners = [{"bind": "127.0.0.1:0"}, tls_listener(certs)]
        async with serving(listeners=listeners) as (_, ports), httpx.AsyncClient() as client:
            plain = (await client.get(f"http://127.0.0.1:{ports[0]}/")).text
            return plain, await get(ports[1], client_context(certs))

    plain, secure = run(main())
    assert eval(plain)["scheme"] == "http"
    assert secure["scheme"] == "https"


def test_keyfile_password_and_password_file(certs: Certs, tmp_path: Path) -> None:
    key = certs.encrypted_key(b"s3cret")
    password_file = tmp_path / "password"
    password_file.write_text("s3cret\n")

    async def main() -> list[str]:
        schemes = []
        for tls in (
            {"keyfile": str(key), "keyfile_password": "s3cret"},
            {"keyfile": str(key), "keyfile_password_file": str(password_file)},
        ):
            async with serving(listeners=[tls_listener(certs, **tls)]) as (_, ports):
                schemes.append((await get(ports[0], client_context(certs)))["scheme"])
        return schemes

    assert run(main()) == ["https", "https"]


def test_ssl_context_factory_is_called_as_uvicorn_calls_it(certs: Certs) -> None:
    calls: list[Any] = []

    def factory(config: Config, default: Any) -> ssl.SSLContext:
        context = default()
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        calls.append((config, context))
        return context

    async def main() -> dict[str, Any]:
        async with serving(
            port=0,
            ssl_certfile=str(certs.cert),
            ssl_keyfile=str(certs.key),
            ssl_context_factory=factory,
        ) as (server, ports):
            assert calls[0][0] is server.config
            return await get(ports[0], client_context(certs))

    assert run(main())["tls"]["tls_version"] == 0x0304


def load_error(**kw: Any) -> str:
    config = Config(app=app, lifespan="off", **kw)
    with pytest.raises(StartupError) as caught:
        config.load()
    return str(caught.value)


def test_bad_keys_and_certificates_fail_at_load_naming_the_listener(
    certs: Certs, tmp_path: Path
) -> None:
    encrypted = str(certs.encrypted_key(b"s3cret"))
    cases = {
        "encrypted-no-password": (
            {"keyfile": encrypted},
            f"listeners[0].tls.keyfile: the key in {encrypted} is encrypted and no password given",
        ),
        "wrong-password": (
            {"keyfile": encrypted, "keyfile_password": "nope"},
            "is encrypted and a wrong password",
        ),
        "mismatch": (
            {"keyfile": str(certs.other_key())},
            "does not match the certificate",
        ),
        "missing-cert": (
            {"certfile": str(tmp_path / "nope.pem")},
            f"listeners[0].tls.certfile: {tmp_path / 'nope.pem'} does not exist",
        ),
        "missing-ca": (
            {"ca_certs": str(tmp_path / "ca.pem"), "client_certs": "required"},
            "listeners[0].tls.ca_certs:",
        ),
    }
    for name, (tls, expected) in cases.items():
        message = load_error(listeners=[tls_listener(certs, **tls)])
        assert expected in message, (name, message)
        assert "\n" not in message


def test_flat_keywords_errors_name_them(certs: Certs, tmp_path: Path) -> None:
    message = load_error(ssl_certfile=str(tmp_path / "x.pem"), ssl_keyfile=str(certs.key))
    assert message.startswith("ssl_certfile: ")
    message = load_error(ssl_certfile=str(certs.cert), ssl_keyfile=str(certs.other_key()))
    assert message.startswith("ssl_keyfile: ") and "does not match" in message


def test_sockets_passed_in_win_and_get_the_flat_tls(certs: Certs) -> None:
    """uvicorn's ``sockets=``: they replace the configured socket, with its TLS settings."""
    import socket

    async def main() -> dict[str, Any]:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = Config(
            app=app,
            lifespan="off",
            log_config=None,
            port=1,  # never bound: the socket passed in wins
            ssl_certfile=str(certs.cert),
            ssl_keyfile=str(certs.key),
        )
        config.load()
        server = Server(config)
        await server.startup(sockets=[sock])
        try:
            return await get(port, client_context(certs))
        finally:
            server.should_exit = True
            await server.shutdown(sockets=[sock])

    assert run(main())["scheme"] == "https"
