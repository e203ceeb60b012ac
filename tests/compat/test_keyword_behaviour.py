"""What each keyword of uvicorn 0.54's ``Config`` does, one test per keyword, through the public
API (``Config``, ``Server``, ``appserver.run``) with real servers on 127.0.0.1 and real clients.

This is the one place that lists all 53: a test named ``test_<keyword>`` per keyword (and
``test_<keyword>__<what>`` for a further check of it), and a last test that fails when one is
missing. Several keywords are tested in depth elsewhere (tests/websocket, tests/listeners,
tests/processes, tests/http); here each gets a small check of its observable effect.

"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import trustme
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from appserver import Config, Server
from appserver.errors import ConfigError, StartupError
from tests.compat.test_uvicorn_keywords import UVICORN_KEYWORDS
from tests.conftest import exchange, read_until_close, run, serve
from tests.lifecycle.procs import Proc, free_port, running, wait_for_output
from tests.listeners.certs import Certs, make_certs
from tests.processes.test_reload import APP as VERSIONED_APP
from tests.processes.test_reload import wait_for_answer
from tests.processes.test_workers import pids_serving, ready_pids, stop
from tests.websocket.helpers import CLOSE, PING, PONG, TEXT, RawClient, echo_app, frame

KEYWORDS = frozenset({"app", *UVICORN_KEYWORDS})
HEAD = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


# --- apps ----------------------------------------------------------------------------------------
def recording(scopes: list[dict[str, Any]], body: bytes = b"ok") -> Any:
    """An app that keeps each HTTP scope it is called with and answers 200 ``body``."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        scopes.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


async def hello(scope: Any, receive: Any, send: Any) -> None:
    """Served by its import string in test_app."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """A WebSocket echo; any HTTP request gets 200 "http"."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"http"})
        return
    await echo_app(scope, receive, send)


marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")


async def show_marker(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": marker.get().encode()})


async def get(url: str, **client: Any) -> httpx.Response:
    async with httpx.AsyncClient(**client) as http_client:
        return await http_client.get(url)


# --- the blocking entry point, in a thread (serve() fixes port=0 and log_config=None) -----------
@contextlib.contextmanager
def run_in_thread(config: Config) -> Iterator[tuple[Server, int]]:
    """``Server(config).run()`` (logging set up, config loaded, a new loop of ``config.loop``)
    in a thread; yields the server and its port once it is serving, stops it on exit."""
    server = Server(config)
    failures: list[BaseException] = []

    def target() -> None:
        try:
            server.run()
        except BaseException as exc:  # SystemExit too: the test reports it
            failures.append(exc)

    thread = threading.Thread(target=target, name="server-run", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), f"Server.run() ended: {failures}"
            assert time.monotonic() < deadline, "Server.run() did not start within 10 s"
            time.sleep(0.01)
        yield server, cast(Any, server.servers[0]).sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
    assert not thread.is_alive(), "Server.run() did not stop within 10 s"
    assert failures == []


@pytest.fixture
def clean_logging() -> Iterator[None]:
    """appserver's loggers as a program that never configured them has them; restored after
    (log_config and access_log change process-wide logger state, as in uvicorn)."""
    names = ["appserver", "appserver.error", "appserver.access"]
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (logger.level, list(logger.handlers), logger.propagate, logger.disabled)
        logger.setLevel(logging.NOTSET)
        logger.handlers = []
        logger.propagate = True
        logger.disabled = False
    try:
        yield
    finally:
        for name, (level, handlers, propagate, disabled) in saved.items():
            logger = logging.getLogger(name)
            for handler in logger.handlers:
                if handler not in handlers:
                    handler.close()
            logger.setLevel(level)
            logger.handlers = handlers
            logger.propagate = propagate
            logger.disabled = disabled


# --- processes -----------------------------------------------------------------------------------
@contextlib.contextmanager
def run_in_process(app: str, *, cwd: Path | None = None, **keywords: Any) -> Iterator[Proc]:
    """``appserver.run(app, **keywords)`` in a child process: SIGTERM, then SIGKILL, on exit."""
    code = f"import appserver\nappserver.run({app!r}, **{keywords!r})\n"
    with running(["-c", code], cwd=cwd, env={"PYTHONDONTWRITEBYTECODE": "1"}) as proc:
        try:
            yield proc
        finally:
            if proc.alive():
                proc.signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(15)
            # running() kills what is still alive


def wait_for_workers(proc: Proc, count: int, timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(ready_pids(proc)) < count:
        assert proc.alive() and time.monotonic() < deadline, proc.output()
        time.sleep(0.05)
    return ready_pids(proc)


def detected(proc: Proc) -> list[list[str]]:
    """The file names of each "Changes detected in a, b: reloading" line, in order."""
    batches = []
    for line in proc.output().splitlines():
        _, found, rest = line.partition("Changes detected in ")
        if found:
            names = rest.rsplit(": reloading", 1)[0].split(", ")
            batches.append([Path(name).name for name in names])
    return batches


def edit_until_detected(proc: Proc, path: Path, text: str = "x = 1\n") -> None:
    """Write ``path`` (again every 2 s, in case the watcher was not watching yet) until the
    supervisor reports a change to it."""
    deadline = time.monotonic() + 15
    while True:
        path.write_text(text)
        for _ in range(40):
            if any(path.name in batch for batch in detected(proc)):
                return
            time.sleep(0.05)
        assert proc.alive() and time.monotonic() < deadline, proc.output()


@contextlib.contextmanager
def reloading(tmp_path: Path, **keywords: Any) -> Iterator[tuple[Proc, int]]:
    """``appserver.run("reloaded_app:app", reload=True, ...)`` from ``tmp_path``, serving "v1"."""
    port = free_port()
    (tmp_path / "reloaded_app.py").write_text(VERSIONED_APP.format(version="v1"))
    keywords = {"port": port, "reload": True, "reload_delay": 0.1, "access_log": False, **keywords}
    with run_in_process("reloaded_app:app", cwd=tmp_path, **keywords) as proc:
        wait_for_answer(port, "v1")
        yield proc, port
        stop(proc)


# --- TLS -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def client_context(certs: Certs, *, client: bool = False) -> ssl.SSLContext:
    """A client trusting the test CA (with the CA's client certificate if ``client``)."""
    context = ssl.create_default_context(cafile=str(certs.ca_pem))
    if client:
        context.load_cert_chain(str(certs.client_cert))
    return context


def tls_keywords(certs: Certs, **more: Any) -> dict[str, Any]:
    return {"ssl_certfile": str(certs.cert), "ssl_keyfile": str(certs.key), **more}


async def handshake(port: int, context: ssl.SSLContext) -> tuple[str, str, bytes]:
    """A TLS handshake with the server: (version, cipher, server certificate in DER)."""
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
    )
    try:
        sslobj = writer.get_extra_info("ssl_object")
        return sslobj.version(), sslobj.cipher()[0], sslobj.getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


def tls12_client(certs: Certs) -> ssl.SSLContext:
    context = client_context(certs)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


# === the application =============================================================================
def test_app() -> None:
    """A callable or an import string "module:attribute"."""

    async def main() -> list[str]:
        bodies = []
        for target in (recording([], b"callable"), f"{__name__}:hello"):
            async with serve(target, "h11") as (_, port):
                bodies.append((await get(f"http://127.0.0.1:{port}/")).text)
        return bodies

    assert run(main()) == ["callable", "hello"]


def test_factory() -> None:
    """The app is called once, at load, and what it returns is served."""
    made: list[int] = []

    def create() -> Any:
        made.append(1)
        return recording([], b"from the factory")

    async def main() -> str:
        async with serve(create, "h11", factory=True) as (_, port):
            first = (await get(f"http://127.0.0.1:{port}/")).text
            assert (await get(f"http://127.0.0.1:{port}/")).text == first
            return first

    assert run(main()) == "from the factory"
    assert made == [1]


class Asgi2App:
    """An ASGI 2 app: ``Asgi2App(scope)`` makes an instance, awaited with (receive, send)."""

    seen: list[dict[str, Any]] = []

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        if self.scope["type"] != "http":
            return
        Asgi2App.seen.append(self.scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"asgi2"})


def test_interface() -> None:
    """interface="asgi2" calls the app as ASGI 2: app(scope), then instance(receive, send)."""

    async def main() -> str:
        async with serve(Asgi2App, "h11", interface="asgi2") as (_, port):
            return (await get(f"http://127.0.0.1:{port}/")).text

    assert run(main()) == "asgi2"


def test_interface__asgi2_scope_says_version_2_0() -> None:
    Asgi2App.seen.clear()

    async def main() -> None:
        async with serve(Asgi2App, "h11", interface="asgi2") as (_, port):
            await get(f"http://127.0.0.1:{port}/")

    run(main())
    assert Asgi2App.seen[0]["asgi"]["version"] == "2.0"


def test_lifespan() -> None:
    """on: the app runs startup and shutdown; off: never called for lifespan; auto: an app
    that fails on the lifespan scope is served anyway; on: that failure stops the start."""
    events: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                events.append(message["type"])
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        await recording([])(scope, receive, send)

    async def no_lifespan(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan here")
        await recording([])(scope, receive, send)

    async def main() -> None:
        async with serve(app, "h11", lifespan="on") as (_, port):
            assert events == ["lifespan.startup"]
            assert (await get(f"http://127.0.0.1:{port}/")).status_code == 200
        assert events == ["lifespan.startup", "lifespan.shutdown"]
        events.clear()
        async with serve(app, "h11", lifespan="off") as (_, port):
            assert (await get(f"http://127.0.0.1:{port}/")).status_code == 200
        assert events == []
        async with serve(no_lifespan, "h11", lifespan="auto") as (_, port):
            assert (await get(f"http://127.0.0.1:{port}/")).status_code == 200
        config = Config(no_lifespan, port=0, lifespan="on", log_config=None)
        config.load()
        server = Server(config)
        await server.startup()
        assert not server.started and server.should_exit and server.servers == []

    run(main())


def test_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file's variables are in the app's os.environ; variables already set win."""
    for name, value in (("FROM_FILE", "x"), ("ALREADY_SET", "set before")):
        monkeypatch.setenv(name, value)  # so that teardown restores them, then:
    monkeypatch.delenv("FROM_FILE")
    env = tmp_path / "app.env"
    env.write_text("FROM_FILE=hello from the file\nALREADY_SET=from the file\n")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = f"{os.environ.get('FROM_FILE')}|{os.environ.get('ALREADY_SET')}"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body.encode()})

    async def main() -> str:
        async with serve(app, "h11", env_file=str(env)) as (_, port):
            return (await get(f"http://127.0.0.1:{port}/")).text

    assert run(main()) == "hello from the file|set before"


def test_root_path() -> None:
    """scope["root_path"], and path and raw_path that include it (ASGI 2.x, uvicorn 0.26+)."""
    scopes: list[dict[str, Any]] = []

    async def main() -> None:
        async with serve(recording(scopes), "h11", root_path="/api") as (_, port):
            await get(f"http://127.0.0.1:{port}/items")

    run(main())
    assert scopes[0]["root_path"] == "/api"
    assert scopes[0]["path"] == "/api/items" and scopes[0]["raw_path"] == b"/api/items"


def test_reset_contextvars() -> None:
    """Each app call runs in an empty contextvars context, not a copy of the server's."""

    async def main(reset: bool) -> str:
        marker.set("server's")
        async with serve(show_marker, "httptools", reset_contextvars=reset) as (_, port):
            return (await get(f"http://127.0.0.1:{port}/")).text

    assert run(main(False)) == "server's"
    assert run(main(True)) == "unset"


# === sockets ======================================================================================
def test_host() -> None:
    """The address bound: IPv4 or IPv6 loopback, seen by the app as scope["server"]."""
    with socket.socket(socket.AF_INET6) as probe:
        try:
            probe.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback here")
    scopes: list[dict[str, Any]] = []

    async def main() -> None:
        for host, url_host in (("127.0.0.1", "127.0.0.1"), ("::1", "[::1]")):
            async with serve(recording(scopes), "h11", host=host) as (server, port):
                assert cast(Any, server.servers[0]).sockets[0].getsockname()[0] == host
                assert (await get(f"http://{url_host}:{port}/")).status_code == 200

    run(main())
    assert [scope["server"][0] for scope in scopes] == ["127.0.0.1", "::1"]


def test_port() -> None:
    """The TCP port bound."""
    port = free_port()
    scopes: list[dict[str, Any]] = []
    config = Config(recording(scopes), port=port, lifespan="off", log_config=None)
    with run_in_thread(config) as (_, bound):
        assert bound == port
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    assert scopes[0]["server"] == ("127.0.0.1", port)


def test_uds(tmp_path: Path) -> None:
    """Serves on a Unix socket (mode 0o666, as uvicorn), removed on shutdown."""
    path = str(tmp_path / "app.sock")
    scopes: list[dict[str, Any]] = []

    async def main() -> None:
        async with serve(recording(scopes), "h11", uds=path):
            assert os.stat(path).st_mode & 0o777 == 0o666
            transport = httpx.AsyncHTTPTransport(uds=path)
            response = await get("http://localhost/", transport=transport)
            assert response.status_code == 200 and response.text == "ok"

    run(main())
    assert len(scopes) == 1 and scopes[0]["client"] is None
    assert not os.path.exists(path)


def test_uds__scope_server_is_the_socket_path(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    scopes: list[dict[str, Any]] = []

    async def main() -> None:
        async with serve(recording(scopes), "h11", uds=path):
            await get("http://localhost/", transport=httpx.AsyncHTTPTransport(uds=path))

    run(main())
    assert scopes[0]["server"] == (path, None)


def test_fd() -> None:
    """Serves on a socket the caller bound, passed by its file descriptor."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        scopes: list[dict[str, Any]] = []

        async def main() -> None:
            async with serve(recording(scopes), "h11", fd=sock.fileno()):
                assert (await get(f"http://127.0.0.1:{port}/")).status_code == 200

        run(main())
        assert scopes[0]["server"] == ("127.0.0.1", port)
    finally:
        with contextlib.suppress(OSError):  # closed by the server: see the next test
            sock.close()


def test_fd__the_callers_descriptor_stays_open() -> None:
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))

        async def main() -> None:
            async with serve(recording([]), "h11", fd=sock.fileno()) as (_, port):
                assert (await get(f"http://127.0.0.1:{port}/")).status_code == 200

        run(main())
        os.fstat(sock.fileno())  # OSError (EBADF) when the server closed it
        assert sock.getsockname()[0] == "127.0.0.1"
    finally:
        with contextlib.suppress(OSError):
            sock.close()


def test_backlog() -> None:
    """The listen() backlog of the socket (the kernel's accept queue, shown by ss)."""
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed")

    async def main() -> str:
        async with serve(recording([]), "h11", backlog=7) as (_, port):
            done = await asyncio.create_subprocess_exec(
                "ss", "-Hltn", f"sport = :{port}", stdout=asyncio.subprocess.PIPE
            )
            out, _ = await done.communicate()
            return out.decode()

    (line,) = run(main()).splitlines()
    assert line.split()[:3] == ["LISTEN", "0", "7"]  # state, queued, backlog


def test_loop() -> None:
    """The event loop Server.run() makes: asyncio's, uvloop's or a "module:callable" factory's."""
    from tests.compat import loops

    seen: list[asyncio.AbstractEventLoop] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(asyncio.get_running_loop())
        await recording([])(scope, receive, send)

    for name in ("asyncio", "uvloop", "tests.compat.loops:new_loop"):
        config = Config(app, port=0, lifespan="off", log_config=None, loop=name)
        with run_in_thread(config) as (_, port):
            assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    import uvloop

    assert type(seen[0]).__module__.startswith("asyncio")
    assert isinstance(seen[1], uvloop.Loop)
    assert seen[2] in loops.made


# === HTTP =========================================================================================
BIG_HEADER = {"x-big": "v" * 2000}


def test_http() -> None:
    """The parser: h11_max_incomplete_event_size bounds the head with h11 only (as uvicorn)."""

    async def main(http: str) -> int:
        async with serve(recording([]), http, h11_max_incomplete_event_size=1024) as (_, port):
            return (await get(f"http://127.0.0.1:{port}/", headers=BIG_HEADER)).status_code

    assert run(main("h11")) == 431
    assert run(main("httptools")) == 200
    assert run(main("auto")) == 200  # httptools, installed here


def test_h11_max_incomplete_event_size() -> None:
    """The largest request head with h11 (431 here; uvicorn answers 400 from h11's error)."""

    async def main(**limit: Any) -> int:
        async with serve(recording([]), "h11", **limit) as (_, port):
            return (await get(f"http://127.0.0.1:{port}/", headers=BIG_HEADER)).status_code

    assert run(main(h11_max_incomplete_event_size=1024)) == 431
    assert run(main()) == 200


def test_http2(tls: Certs) -> None:
    """False (the only value): a TLS client offering h2 gets http/1.1 by ALPN; True is refused."""
    with pytest.raises(ConfigError, match="HTTP/2 is not supported yet"):
        Config(hello, http2=True)
    context = client_context(tls)
    context.set_alpn_protocols(["h2", "http/1.1"])

    async def main() -> str | None:
        async with serve(hello, "h11", http2=False, **tls_keywords(tls)) as (_, port):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
            )
            try:
                alpn: str | None = writer.get_extra_info("ssl_object").selected_alpn_protocol()
                writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data, _ = await read_until_close(reader, 2.0)
                assert data.startswith(b"HTTP/1.1 200 ")
                return alpn
            finally:
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError):
                    await writer.wait_closed()

    assert run(main()) == "http/1.1"


def test_server_header() -> None:
    """True: `server: appserver` (uvicorn's says uvicorn); False: no server header."""

    async def main(enabled: bool) -> httpx.Response:
        async with serve(recording([]), "h11", server_header=enabled) as (_, port):
            return await get(f"http://127.0.0.1:{port}/")

    assert run(main(True)).headers.get_list("server") == ["appserver"]
    assert "server" not in run(main(False)).headers


def test_date_header() -> None:
    """True: an RFC 9110 date in GMT; False: no date header."""

    async def main(enabled: bool) -> httpx.Response:
        async with serve(recording([]), "h11", date_header=enabled) as (_, port):
            return await get(f"http://127.0.0.1:{port}/")

    date = run(main(True)).headers["date"]
    assert date.endswith(" GMT") and parsedate_to_datetime(date).tzname() == "UTC"
    assert "date" not in run(main(False)).headers


def test_headers() -> None:
    """Added to every response; a custom server header replaces the default one."""

    async def main() -> httpx.Response:
        custom = [("X-Custom", "1"), ("Server", "custom")]
        async with serve(recording([]), "h11", headers=custom) as (_, port):
            return await get(f"http://127.0.0.1:{port}/")

    response = run(main())
    assert response.headers["x-custom"] == "1"
    assert response.headers.get_list("server") == ["custom"]


FORWARDED = {"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"}


def test_proxy_headers() -> None:
    """True: X-Forwarded-For/-Proto from a trusted peer set scope client and scheme; False:
    they are ignored."""
    scopes: list[dict[str, Any]] = []

    async def main(enabled: bool) -> None:
        async with serve(recording(scopes), "h11", proxy_headers=enabled) as (_, port):
            await get(f"http://127.0.0.1:{port}/", headers=FORWARDED)

    run(main(True))
    run(main(False))
    assert (scopes[0]["client"], scopes[0]["scheme"]) == (("203.0.113.7", 0), "https")
    assert scopes[1]["client"][0] == "127.0.0.1" and scopes[1]["scheme"] == "http"


def test_forwarded_allow_ips() -> None:
    """Proxy headers are honoured from the peers listed (IPs, CIDR networks, "*") only."""
    scopes: list[dict[str, Any]] = []

    async def main(trusted: str) -> None:
        async with serve(recording(scopes), "h11", forwarded_allow_ips=trusted) as (_, port):
            await get(f"http://127.0.0.1:{port}/", headers=FORWARDED)

    for trusted in ("127.0.0.1", "127.0.0.0/8", "*", "10.0.0.1", "10.0.0.0/8, ::1"):
        run(main(trusted))
    honoured = [scope["client"][0] == "203.0.113.7" for scope in scopes]
    assert honoured == [True, True, True, False, False]
    assert [scope["scheme"] for scope in scopes] == ["https"] * 3 + ["http"] * 2


# === limits and timeouts =========================================================================
def test_limit_concurrency() -> None:
    """While one request runs with limit_concurrency=1, a second concurrent request gets 503.

    uvicorn counts the request's own connection as well, so there 1 refuses every request
    (its docs say so); appserver admits ``limit_concurrency`` concurrent requests."""

    async def main() -> tuple[int, str, int]:
        started, release = asyncio.Event(), asyncio.Event()

        async def held(scope: Any, receive: Any, send: Any) -> None:
            started.set()
            await release.wait()
            await recording([], b"done")(scope, receive, send)

        async with serve(held, "h11", limit_concurrency=1) as (_, port):
            first = asyncio.ensure_future(get(f"http://127.0.0.1:{port}/"))
            await started.wait()
            second = await get(f"http://127.0.0.1:{port}/")
            release.set()
            done = await first
            return second.status_code, done.text, done.status_code

    assert run(main()) == (503, "done", 200)


def test_limit_max_requests() -> None:
    """The server stops (on_tick says so and sets should_exit) once this many responses are
    done, not before."""

    async def main() -> list[bool]:
        stops = []
        async with serve(recording([]), "h11", limit_max_requests=3) as (server, port):
            for _ in range(3):
                await get(f"http://127.0.0.1:{port}/")
                stops.append(await server.on_tick(1))
            assert server.should_exit
            await asyncio.wait_for(server.main_loop(), 5)  # returns: the limit is reached
        return stops

    assert run(main()) == [False, False, True]


def test_limit_max_requests_jitter() -> None:
    """Each server stops after limit_max_requests plus a random 0..jitter responses."""
    config = Config(hello, limit_max_requests=1, limit_max_requests_jitter=1000)
    limits = {Server(config).limit_max_requests for _ in range(10)}
    assert len(limits) > 1 and all(limit is not None and 1 <= limit <= 1001 for limit in limits)

    async def main() -> tuple[int, int | None]:
        async with serve(
            recording([]), "h11", limit_max_requests=2, limit_max_requests_jitter=3
        ) as (server, port):
            served = 0
            while not await server.on_tick(1):
                assert served < 10
                await get(f"http://127.0.0.1:{port}/")
                served += 1
            return served, server.limit_max_requests

    served, limit = run(main())
    assert 2 <= served <= 5 and served == limit


def test_timeout_keep_alive() -> None:
    """An idle keep-alive connection is closed by the server once this long has passed."""

    async def main() -> tuple[bytes, bool]:
        async with serve(recording([]), "h11", timeout_keep_alive=0.3) as (_, port):
            return await exchange(port, HEAD, timeout=3.0)  # the default 5 s would not close

    data, closed = run(main())
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nok")
    assert closed


@pytest.mark.usefixtures("clean_logging")
def test_timeout_graceful_shutdown(caplog: pytest.LogCaptureFixture) -> None:
    """Shutdown waits this long for a request in flight, then cancels it and closes."""
    cancelled: list[bool] = []

    async def main() -> bool:
        started = asyncio.Event()

        async def stuck(scope: Any, receive: Any, send: Any) -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        async with serve(stuck, "h11", timeout_graceful_shutdown=0.2) as (server, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(HEAD)
                await started.wait()
                server.should_exit = True
                await asyncio.wait_for(server.shutdown(), 5)
                _, closed = await read_until_close(reader, 2.0)
                return closed
            finally:
                writer.close()

    with caplog.at_level(logging.INFO, logger="appserver"):
        assert run(main())
    assert cancelled == [True]
    assert any("timeout graceful shutdown exceeded" in r.getMessage() for r in caplog.records)


def test_callback_notify() -> None:
    """Awaited by the main loop (the first time at once, then every timeout_notify)."""

    async def main() -> list[str]:
        calls: list[str] = []
        awaited = asyncio.Event()

        async def notify() -> None:
            await asyncio.sleep(0)
            calls.append("awaited")
            awaited.set()

        async with serve(recording([]), "h11", callback_notify=notify) as (server, _):
            loop_task = asyncio.ensure_future(server.main_loop())
            try:
                await asyncio.wait_for(awaited.wait(), 5)
            finally:
                server.should_exit = True
                await asyncio.wait_for(loop_task, 5)
        return calls

    assert run(main()) == ["awaited"]


def test_timeout_notify() -> None:
    """The least time between two callback_notify calls."""

    async def main(interval: float) -> int:
        calls: list[int] = []

        async def notify() -> None:
            calls.append(1)

        keywords: dict[str, Any] = {"callback_notify": notify, "timeout_notify": interval}
        async with serve(recording([]), "h11", **keywords) as (server, _):
            await server.on_tick(0)
            await asyncio.sleep(0.1)
            await server.on_tick(0)
        return len(calls)

    assert run(main(30)) == 1  # the second tick comes too soon
    assert run(main(0.01)) == 2


# === logging ======================================================================================
@pytest.mark.usefixtures("clean_logging")
def test_log_config(tmp_path: Path) -> None:
    """A dictConfig mapping configures the server's logging (here: its records go to a file)."""
    log = tmp_path / "server.log"
    log_config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(name)s %(levelname)s %(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(log), "formatter": "plain"}
        },
        "loggers": {"appserver": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }
    config = Config(recording([]), port=0, lifespan="off", log_config=log_config)
    with run_in_thread(config) as (_, port):
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    text = log.read_text()
    assert f"appserver.error INFO Listening on http://127.0.0.1:{port}" in text
    assert "appserver.access INFO 127.0.0.1:" in text and '"GET / HTTP/1.1" 200' in text


@pytest.mark.usefixtures("clean_logging")
def test_log_level(caplog: pytest.LogCaptureFixture) -> None:
    """The lowest level of the server's records (with a log_config, as here)."""
    quiet = {"version": 1, "disable_existing_loggers": False}  # leaves the loggers to log_level
    for level in ("warning", "debug"):
        config = Config(recording([]), port=0, lifespan="off", log_config=quiet, log_level=level)
        with run_in_thread(config) as (_, port):
            httpx.get(f"http://127.0.0.1:{port}/")
    listening = [r.levelname for r in caplog.records if r.getMessage().startswith("Listening")]
    access = [r for r in caplog.records if r.name == "appserver.access"]
    assert listening == ["INFO"]  # from the debug run only
    assert len(access) == 1


def test_log_level__applies_without_a_log_config(caplog: pytest.LogCaptureFixture) -> None:
    logging.getLogger("appserver").setLevel(logging.WARNING)  # the program's own choice
    config = Config(recording([]), port=0, lifespan="off", log_config=None, log_level="debug")
    with run_in_thread(config):
        pass
    assert any(r.getMessage().startswith("Listening") for r in caplog.records)


@pytest.mark.usefixtures("clean_logging")
def test_log_level__warning_silences_access_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """As uvicorn: the access logger follows log_level too, with the default logging."""
    config = Config(recording([]), port=0, lifespan="off", log_level="warning")
    with run_in_thread(config) as (_, port):
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    out = capsys.readouterr().out
    assert '"GET / HTTP/1.1" 200' not in out


@pytest.mark.usefixtures("clean_logging")
def test_access_log(caplog: pytest.LogCaptureFixture) -> None:
    """True: one access record per response; False: none."""

    async def main(enabled: bool) -> None:
        async with serve(recording([]), "h11", access_log=enabled) as (_, port):
            await get(f"http://127.0.0.1:{port}/p?q=1")

    with caplog.at_level(logging.INFO, logger="appserver.access"):
        run(main(True))
        run(main(False))
    lines = [r.getMessage() for r in caplog.records if r.name == "appserver.access"]
    assert len(lines) == 1 and lines[0].endswith('"GET /p?q=1 HTTP/1.1" 200')


@pytest.mark.usefixtures("clean_logging")
def test_use_colors(capsys: pytest.CaptureFixture[str]) -> None:
    """True: the default logging colours the level names; False: plain."""
    err = []
    for colours in (True, False):
        config = Config(recording([]), port=0, lifespan="off", use_colors=colours)
        with run_in_thread(config):
            pass
        err.append(capsys.readouterr().err)
    assert "\033[32mINFO   \033[0m Listening on" in err[0]
    assert "INFO    Listening on" in err[1] and "\033[" not in err[1]


# === TLS ==========================================================================================
def test_ssl_certfile(tls: Certs) -> None:
    """The certificate the server presents in a real handshake; the connection is https."""
    scopes: list[dict[str, Any]] = []
    leaf = (
        tls.cert.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    )

    async def main() -> bytes:
        async with serve(recording(scopes), "h11", **tls_keywords(tls)) as (_, port):
            response = await get(f"https://127.0.0.1:{port}/", verify=client_context(tls))
            assert response.status_code == 200
            return (await handshake(port, client_context(tls)))[2]

    assert run(main()) == ssl.PEM_cert_to_DER_cert(leaf)
    assert scopes[0]["scheme"] == "https"


def test_ssl_keyfile(tls: Certs) -> None:
    """The certificate's private key: without it the certificate cannot be served."""

    async def main() -> int:
        async with serve(recording([]), "h11", **tls_keywords(tls)) as (_, port):
            return (await get(f"https://127.0.0.1:{port}/", verify=client_context(tls))).status_code

    assert run(main()) == 200
    with pytest.raises(StartupError, match="ssl_certfile"):
        Config(hello, ssl_certfile=str(tls.cert), log_config=None).load()


def test_ssl_keyfile_password(tls: Certs) -> None:
    """Decrypts an encrypted ssl_keyfile; a wrong one stops the start."""
    encrypted = str(tls.encrypted_key(b"s3cret"))

    async def main() -> int:
        keywords = {"ssl_keyfile": encrypted, "ssl_keyfile_password": "s3cret"}
        async with serve(recording([]), "h11", **tls_keywords(tls, **keywords)) as (_, port):
            return (await get(f"https://127.0.0.1:{port}/", verify=client_context(tls))).status_code

    assert run(main()) == 200
    wrong = tls_keywords(tls, ssl_keyfile=encrypted, ssl_keyfile_password="wrong")
    with pytest.raises(StartupError, match="encrypted and a wrong password"):
        Config(hello, log_config=None, **wrong).load()


def test_ssl_version(tls: Certs) -> None:
    """The protocol of the server's SSLContext: PROTOCOL_TLSv1_2 caps the handshake at TLS 1.2;
    the default (PROTOCOL_TLS_SERVER) negotiates TLS 1.3. (The ciphers are given: the default
    "TLSv1" list shares no cipher with a TLS 1.2 client, see test_ssl_ciphers__...)"""

    async def main(**version: Any) -> str:
        keywords = tls_keywords(tls, ssl_ciphers="ECDHE+AESGCM", **version)
        async with serve(recording([]), "h11", **keywords) as (_, port):
            return (await handshake(port, client_context(tls)))[0]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ssl.PROTOCOL_TLSv1_2 is
        assert run(main(ssl_version=ssl.PROTOCOL_TLSv1_2)) == "TLSv1.2"
    assert run(main()) == "TLSv1.3"


def test_ssl_cert_reqs(tls: Certs) -> None:
    """CERT_REQUIRED: a client without a certificate is refused, one with a certificate from
    ssl_ca_certs is served; the default (CERT_NONE) serves a client without one."""

    async def main() -> list[int | str]:
        outcomes: list[int | str] = []
        required = tls_keywords(tls, ssl_cert_reqs=ssl.CERT_REQUIRED, ssl_ca_certs=str(tls.ca_pem))
        for keywords, client in (
            (required, client_context(tls, client=True)),
            (required, client_context(tls)),
            (tls_keywords(tls), client_context(tls)),
        ):
            async with serve(recording([]), "h11", **keywords) as (_, port):
                try:
                    response = await get(f"https://127.0.0.1:{port}/", verify=client)
                    outcomes.append(response.status_code)
                except httpx.TransportError:
                    outcomes.append("refused")
        return outcomes

    assert run(main()) == [200, "refused", 200]


def test_ssl_ca_certs(tls: Certs, tmp_path: Path) -> None:
    """The CAs client certificates must chain to: one from another CA is refused."""
    stranger = tmp_path / "stranger.pem"
    trustme.CA().issue_cert("other@example.com").private_key_and_cert_chain_pem.write_to_path(
        str(stranger)
    )

    async def main() -> list[int | str]:
        outcomes: list[int | str] = []
        keywords = tls_keywords(tls, ssl_cert_reqs=ssl.CERT_REQUIRED, ssl_ca_certs=str(tls.ca_pem))
        async with serve(recording([]), "h11", **keywords) as (_, port):
            for cert in (tls.client_cert, stranger):
                client = client_context(tls)
                client.load_cert_chain(str(cert))
                try:
                    response = await get(f"https://127.0.0.1:{port}/", verify=client)
                    outcomes.append(response.status_code)
                except httpx.TransportError:
                    outcomes.append("refused")
        return outcomes

    assert run(main()) == [200, "refused"]


def test_ssl_ciphers(tls: Certs) -> None:
    """The OpenSSL cipher list of the server (TLS 1.2 and below): the one given is used."""

    async def main(cipher: str) -> str:
        keywords = tls_keywords(tls, ssl_ciphers=cipher)
        async with serve(recording([]), "h11", **keywords) as (_, port):
            version, used, _ = await handshake(port, tls12_client(tls))
            assert version == "TLSv1.2"
            return used

    for cipher in ("ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES128-GCM-SHA256"):
        assert run(main(cipher)) == cipher


def test_ssl_ciphers__the_default_serves_a_tls_1_2_client(tls: Certs) -> None:
    async def main() -> str:
        async with serve(recording([]), "h11", **tls_keywords(tls)) as (_, port):
            return (await handshake(port, tls12_client(tls)))[0]

    assert run(main()) == "TLSv1.2"


def test_ssl_context_factory(tls: Certs, tmp_path: Path) -> None:
    """Called as factory(config, default_factory) at load; the context it returns is served
    (here: the default one, given another certificate)."""
    other = tls.ca.issue_cert("127.0.0.1")
    other_pem = tmp_path / "other.pem"
    other.private_key_and_cert_chain_pem.write_to_path(str(other_pem))
    calls: list[Config] = []

    def factory(config: Config, default_factory: Any) -> ssl.SSLContext:
        context: ssl.SSLContext = default_factory()
        context.load_cert_chain(str(other_pem))
        calls.append(config)
        return context

    async def main() -> bytes:
        keywords = tls_keywords(tls, ssl_context_factory=factory)
        async with serve(recording([]), "h11", **keywords) as (server, port):
            assert calls == [server.config]
            return (await handshake(port, client_context(tls)))[2]

    assert run(main()) == ssl.PEM_cert_to_DER_cert(other.cert_chain_pems[0].bytes().decode())


# === WebSockets ===================================================================================
def test_ws() -> None:
    """ws="none": an upgrade is served as plain HTTP; uvicorn's other names ("wsproto", ...)
    all mean the one implementation, which accepts the websockets client."""

    async def main() -> tuple[int, str]:
        async with serve(echo, "h11", ws="none") as (_, port):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"ws://127.0.0.1:{port}/"):
                    pass
        async with (
            serve(echo, "h11", ws="wsproto") as (_, port),
            connect(f"ws://127.0.0.1:{port}/") as ws,
        ):
            await ws.send("hi")
            echoed = await ws.recv()
        return refused.value.response.status_code, str(echoed)

    assert run(main()) == (200, "hi")


def test_ws_max_size() -> None:
    """A message of exactly this size is taken; one byte more closes the connection with 1009."""

    async def main() -> int | None:
        async with (
            serve(echo, "h11", ws_max_size=1000) as (_, port),
            connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws,
        ):
            await ws.send(b"x" * 1000)
            assert await ws.recv() == b"x" * 1000
            await ws.send(b"x" * 1001)
            with pytest.raises(ConnectionClosedError) as closed:
                await ws.recv()
            return closed.value.rcvd.code if closed.value.rcvd else None

    assert run(main()) == 1009


def test_ws_max_queue() -> None:
    """Once this many received messages wait for the app, the server stops reading the
    connection (a ping behind them is answered only when the app takes them)."""

    async def main(limit: int, wait: float) -> bool:
        """Whether the second ping was answered within ``wait`` while the app held back."""
        release = asyncio.Event()

        async def slow(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            await release.wait()
            while (await receive())["type"] != "websocket.disconnect":
                pass

        async with serve(slow, "h11", ws_max_queue=limit, ws_ping_interval=None) as (_, port):
            client = await RawClient.connect(port)
            try:
                await client.handshake()
                # Three messages and a ping in one write: read together, the ping answered.
                client.send(b"".join(frame(TEXT, b"m%d" % i) for i in range(3)) + frame(PING, b"1"))
                assert await asyncio.wait_for(client.recv_frame(), 5) == (True, PONG, b"1")
                client.send(frame(PING, b"2"))
                pong = asyncio.ensure_future(client.recv_frame())
                done, _ = await asyncio.wait({pong}, timeout=wait)
                release.set()  # the app takes the messages: reading resumes
                assert await asyncio.wait_for(pong, 5) == (True, PONG, b"2")
                return bool(done)
            finally:
                client.close()

    assert not run(main(1, wait=0.5))  # reading stopped at the queue limit
    assert run(main(32, wait=5))  # the default: three messages are below it


def test_ws_ping_interval() -> None:
    """The server pings the client this often."""

    async def main() -> int:
        async with serve(echo, "h11", ws_ping_interval=0.1, ws_ping_timeout=None) as (_, port):
            client = await RawClient.connect(port)
            try:
                await client.handshake()
                _, opcode, _ = await asyncio.wait_for(client.recv_frame(), 5)  # default: 20 s
                return opcode
            finally:
                client.close()

    assert run(main()) == PING


def test_ws_ping_timeout() -> None:
    """A ping left unanswered this long closes the connection with 1011."""

    async def main() -> bytes:
        settings: dict[str, Any] = {"ws_ping_interval": 0.05, "ws_ping_timeout": 0.1}
        async with serve(echo, "h11", **settings) as (_, port):
            client = await RawClient.connect(port)
            try:
                await client.handshake()
                while True:  # pings, never answered, then the close
                    _, opcode, payload = await asyncio.wait_for(client.recv_frame(), 5)
                    if opcode == CLOSE:
                        return payload[:2]
                    assert opcode == PING
            finally:
                client.close()

    assert run(main()) == (1011).to_bytes(2, "big")


def test_ws_per_message_deflate() -> None:
    """True: permessage-deflate is negotiated with a client offering it; False: not."""

    async def main(enabled: bool) -> str | None:
        async with (
            serve(echo, "h11", ws_per_message_deflate=enabled) as (_, port),
            connect(f"ws://127.0.0.1:{port}/") as ws,
        ):
            await ws.send("x" * 1000)
            assert await ws.recv() == "x" * 1000
            assert ws.response is not None
            return ws.response.headers.get("sec-websocket-extensions")

    negotiated = run(main(True))
    assert negotiated is not None and negotiated.startswith("permessage-deflate")
    assert run(main(False)) is None


# === processes (appserver.run in a child process) ================================================
WORKER_APP = "tests.processes.apps:app"  # answers with the worker's pid; /hang blocks it


def test_workers() -> None:
    """That many worker processes, each serving on the one port."""
    port = free_port()
    with run_in_process(WORKER_APP, port=port, workers=2, access_log=False) as proc:
        ready = wait_for_workers(proc, 2)
        serving = pids_serving(port, 2)
        assert serving == set(ready) and proc.pid not in serving
        stop(proc)


def test_timeout_worker_healthcheck() -> None:
    """A worker that does not answer the supervisor's ping this long is killed and replaced."""
    port = free_port()
    keywords: dict[str, Any] = {
        "port": port,
        "workers": 1,
        "timeout_worker_healthcheck": 1,
        "access_log": False,
    }
    with run_in_process(WORKER_APP, **keywords) as proc:
        (hung,) = wait_for_workers(proc, 1)
        with contextlib.suppress(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/hang", timeout=0.5)
        wait_for_output(proc, f"Worker [{hung}] did not answer for 1s: killed, restarting")
        (replacement,) = set(wait_for_workers(proc, 2)) - {hung}
        assert pids_serving(port, 1) == {replacement}
        stop(proc)


def test_reload(tmp_path: Path) -> None:
    """An edit to the app's module serves the new code."""
    with reloading(tmp_path) as (proc, port):
        edit_until_detected(proc, tmp_path / "reloaded_app.py", VERSIONED_APP.format(version="v2"))
        wait_for_answer(port, "v2")


def test_reload_dirs(tmp_path: Path) -> None:
    """Only these directories are watched: an edit outside them does not reload, one inside
    does (and the new worker imports the edited app)."""
    watched = tmp_path / "watched"
    watched.mkdir()
    with reloading(tmp_path, reload_dirs=[str(watched)]) as (proc, port):
        (tmp_path / "reloaded_app.py").write_text(VERSIONED_APP.format(version="v2"))
        edit_until_detected(proc, watched / "trigger.py")
        wait_for_answer(port, "v2")
        assert all("reloaded_app.py" not in batch for batch in detected(proc)), proc.output()


def test_reload_includes(tmp_path: Path) -> None:
    """Files matching these patterns reload (here *.cfg, which the default *.py does not)."""
    with reloading(tmp_path, reload_includes=["*.py", "*.cfg"]) as (proc, _):
        edit_until_detected(proc, tmp_path / "settings.cfg")


def test_reload_includes__add_to_the_py_default(tmp_path: Path) -> None:
    with reloading(tmp_path, reload_includes=["*.cfg"]) as (proc, _):
        edit_until_detected(proc, tmp_path / "first.cfg")  # the watcher is running
        (tmp_path / "edited.py").write_text("x = 1\n")
        edit_until_detected(proc, tmp_path / "second.cfg")
        assert any("edited.py" in batch for batch in detected(proc)), proc.output()


def test_reload_excludes(tmp_path: Path) -> None:
    """Files matching these patterns never reload, even when reload_includes match them."""
    with reloading(tmp_path, reload_excludes=["skip_*"]) as (proc, _):
        edit_until_detected(proc, tmp_path / "first.py")  # the watcher is running
        (tmp_path / "skip_me.py").write_text("x = 1\n")
        edit_until_detected(proc, tmp_path / "keep.py")
        assert all("skip_me.py" not in batch for batch in detected(proc)), proc.output()


def test_reload_excludes__add_to_the_default_excludes(tmp_path: Path) -> None:
    with reloading(tmp_path, reload_excludes=["skip_*"]) as (proc, _):
        edit_until_detected(proc, tmp_path / "first.py")  # the watcher is running
        (tmp_path / ".hidden.py").write_text("x = 1\n")
        edit_until_detected(proc, tmp_path / "keep.py")
        assert all(".hidden.py" not in batch for batch in detected(proc)), proc.output()


def test_reload_delay(tmp_path: Path) -> None:
    """Changes made together are gathered into one reload (the delay bounds how long a burst
    is gathered; how long it is cannot be seen without timing, so it is not asserted)."""
    with reloading(tmp_path, reload_delay=0.5) as (proc, _):
        edit_until_detected(proc, tmp_path / "first.py")  # the watcher is running
        for name in ("a.py", "b.py"):
            (tmp_path / name).write_text("x = 1\n")
        edit_until_detected(proc, tmp_path / "c.py")
        assert detected(proc)[-1] == ["a.py", "b.py", "c.py"], proc.output()


# === the list =====================================================================================
def test_all_53_keywords_are_covered_here() -> None:
    """One test_<keyword> per keyword of uvicorn's Config; every other test names one too."""
    names = [
        name.removeprefix("test_")
        for name, value in globals().items()
        if name.startswith("test_") and callable(value)
    ]
    names.remove("all_53_keywords_are_covered_here")
    assert len(KEYWORDS) == 53
    assert {name for name in names if "__" not in name} == KEYWORDS
    assert {name.split("__")[0] for name in names} <= KEYWORDS
