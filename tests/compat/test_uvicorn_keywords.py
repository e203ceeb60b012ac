"""uvicorn's Config keywords and attributes, through the public API (real servers, real
clients): each keyword in uvicorn's value forms does what it does there."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
from typing import Any

import httpx
import pytest

from appserver import Config, Server
from appserver.errors import AppLoadError, ConfigError
from tests.conftest import run, serve

marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": marker.get().encode()})


async def get(port: int) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"http://127.0.0.1:{port}/")).text


def test_log_level_takes_a_logging_constant() -> None:
    assert Config(app, log_level=logging.INFO).log_level == "info"
    assert Config(app, log_level=logging.DEBUG).log_level == "debug"
    assert Config(app, log_level=5).log_level == "trace"
    with pytest.raises(ConfigError, match="expected a level name or one of"):
        Config(app, log_level=17)


@pytest.mark.parametrize("ws", ["auto", "none", "websockets", "websockets-sansio", "wsproto"])
def test_every_uvicorn_ws_name_is_accepted(ws: str, caplog: pytest.LogCaptureFixture) -> None:
    config = Config(app, ws=ws, log_config=None)
    with caplog.at_level(logging.INFO, logger="appserver"):
        config.load()
    said = [
        r.getMessage() for r in caplog.records if "one WebSocket implementation" in r.getMessage()
    ]
    assert len(said) == (1 if ws in ("websockets-sansio", "wsproto") else 0)


def test_http2_true_is_a_clear_error() -> None:
    assert Config(app, http2=False).http2 is False
    with pytest.raises(ConfigError, match="HTTP/2 is not supported yet"):
        Config(app, http2=True)


def test_interface_wsgi_is_refused_at_load() -> None:
    config = Config(app, interface="wsgi")
    with pytest.raises(AppLoadError, match='interface = "wsgi" is not supported'):
        config.load()


def test_loop_as_a_module_callable_factory() -> None:
    from tests.compat import loops

    config = Config(app, loop="tests.compat.loops:new_loop")
    factory = config.get_loop_factory()
    loop = factory()
    assert loop in loops.made
    loop.close()
    assert Config(app, loop="none").get_loop_factory() is asyncio.new_event_loop
    with pytest.raises(ConfigError, match="a loop factory"):
        Config(app, loop="uv-loop")


def test_reset_contextvars_runs_each_request_in_an_empty_context() -> None:
    async def main(reset: bool) -> str:
        marker.set("server's")
        async with serve(app, "httptools", reset_contextvars=reset) as (_, port):
            return await get(port)

    assert run(main(False)) == "server's"
    assert run(main(True)) == "unset"


def test_h11_max_incomplete_event_size_is_the_h11_head_limit() -> None:
    async def main() -> int:
        async with (
            serve(app, "h11", h11_max_incomplete_event_size=1024) as (_, port),
            httpx.AsyncClient() as client,
        ):
            response = await client.get(f"http://127.0.0.1:{port}/", headers={"x-big": "v" * 2000})
            return response.status_code

    assert run(main()) == 431


def test_use_colors_colours_level_names(capsys: pytest.CaptureFixture[str]) -> None:
    config = Config(app, use_colors=True)
    config.configure_logging()
    logging.getLogger("appserver.error").warning("coloured")
    assert "\033[33mWARNING\033[0m coloured" in capsys.readouterr().err
    Config(app, use_colors=False).configure_logging()
    logging.getLogger("appserver.error").warning("plain")
    assert "WARNING plain" in capsys.readouterr().err


def test_config_attributes() -> None:
    config = Config("tests.compat.test_uvicorn_keywords:app", reload=True)
    assert config.should_reload and not Config(app, reload=True).should_reload
    assert Config(app).asgi_version == "3.0"
    assert Config(app, interface="asgi2").asgi_version == "2.0"
    assert Config(app).workers is None and Config(app, workers=4).workers == 4
    assert not Config(app).loaded
    config = Config(app, log_config=None)
    config.load()
    assert config.loaded
    sock = Config(app, port=0).bind_socket()
    try:
        assert sock.family == socket.AF_INET and sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()


def test_server_limit_max_requests_has_the_jitter_applied() -> None:
    server = Server(Config(app, limit_max_requests=100, limit_max_requests_jitter=10))
    assert server.limit_max_requests is not None and 100 <= server.limit_max_requests <= 110
    assert Server(Config(app)).limit_max_requests is None
    assert server.servers == []


def test_uvicorn_environment_conventions() -> None:
    from appserver.config.sources import load

    config = load(environ={"WEB_CONCURRENCY": "3", "FORWARDED_ALLOW_IPS": "10.0.0.0/8"}).unwrap()
    assert config.workers == 3
    assert config.forwarded_allow_ips == ["10.0.0.0/8"]
    ours = {"WEB_CONCURRENCY": "3", "APPSERVER_WORKERS": "2"}
    assert load(environ=ours).unwrap().workers == 2  # the APPSERVER_ variable wins


def test_serve_takes_an_import_string_like_uvicorn(tmp_path: Any) -> None:
    import signal

    from tests.lifecycle.procs import free_port, running, wait_until_serving

    port = free_port()
    with running(["-m", "appserver", "serve", "examples.hello:app", "--port", str(port)]) as proc:
        assert wait_until_serving(proc, port).text == "Hello, world!"
        proc.signal(signal.SIGTERM)
        assert proc.wait().returncode == 0


def test_header_values_keep_their_commas_in_the_environment() -> None:
    from appserver.config.sources import load

    environ = {"APPSERVER_HEADERS": "cache-control: no-cache, no-store, x-frame-options: DENY"}
    config = load(environ=environ).unwrap()
    assert config.headers == [("cache-control", "no-cache, no-store"), ("x-frame-options", "DENY")]


def test_lifespan_objects_have_uvicorns_attributes() -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    async def raising(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        raise RuntimeError("boom")

    async def fine(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return

    async def main(app: Any) -> Any:
        config = Config(app, lifespan="on", log_config=None)
        config.load()
        lifespan = config.lifespan_class(config)
        await lifespan.startup()
        if not lifespan.should_exit:
            await lifespan.shutdown()
        return lifespan

    failed, raised, ok = run(main(failing)), run(main(raising)), run(main(fine))
    assert failed.startup_failed and failed.should_exit and not failed.error_occurred
    assert raised.error_occurred and raised.should_exit
    assert not (ok.startup_failed or ok.shutdown_failed or ok.error_occurred or ok.should_exit)
    assert isinstance(ok.state, dict)
    off = Config(app, lifespan="off", log_config=None)
    off.load()
    assert off.lifespan_class(off).startup_failed is False


def test_an_import_error_in_the_app_shows_the_apps_own_frames(tmp_path: Any) -> None:
    from tests.lifecycle.procs import free_port, running

    package = tmp_path / "brokenpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text(
        "def setup():\n    return undefined_name\nVALUE = setup()\n"
    )
    (package / "main.py").write_text("from brokenpkg import helpers\napp = None\n")
    args = ["-m", "appserver", "serve", "brokenpkg.main:app", "--port", str(free_port())]
    with running(args, cwd=tmp_path) as proc:
        result = proc.wait()
    assert result.returncode == 1
    assert "NameError: name 'undefined_name' is not defined" in result.output
    assert f'File "{package / "helpers.py"}", line 2, in setup' in result.output
    assert "importlib" not in result.output
    with running(["-m", "appserver", "serve", "--app", "nowhere.main:app"], cwd=tmp_path) as proc:
        missing = proc.wait()
    assert missing.returncode == 1
    (line,) = [x for x in missing.output.splitlines() if "cannot import app" in x]
    assert "no module named 'nowhere'" in line and "--app-dir" in line
    assert "(from flag --app)" in line


def test_a_forced_exit_is_one_warning_line_even_with_starlettes_lifespan() -> None:
    import signal
    import threading

    from tests.lifecycle.procs import free_port, running, wait_for_output, wait_until_serving

    port = free_port()
    args = ["-m", "appserver", "serve", "tests.compat.starlette_app:app", "--port", str(port)]

    def slow() -> None:
        with contextlib.suppress(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/slow", timeout=30)

    with running([*args, "--lifespan", "on"]) as proc:
        wait_until_serving(proc, port)
        threading.Thread(target=slow, daemon=True).start()
        wait_for_output(proc, "slow request begun")
        proc.signal(signal.SIGINT)
        wait_for_output(proc, "Waiting for connections to close")
        proc.signal(signal.SIGINT)
        result = proc.wait()
    assert result.returncode == 1
    assert "Traceback" not in result.output and "CancelledError" not in result.output
    assert [line for line in result.output.splitlines() if " ERROR " in line] == []


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m30s", 90.0), ("1h30m", 5400.0), ("2s500ms", 2.5), ("30s", 30.0), ("90", 90.0)],
)
def test_durations_take_compound_forms(text: str, seconds: float) -> None:
    assert Config(app, timeout_keep_alive=text).timeout_keep_alive == seconds


@pytest.mark.parametrize("text", ["1m30", "1x", "m", "30s1m"])
def test_bad_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(ConfigError, match='"1m30s"'):
        Config(app, timeout_keep_alive=text)


def test_help_answers_to_dash_h() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "appserver", "serve", "-h"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0 and "--workers" in done.stdout


async def zero_arguments() -> None:
    return None


class Asgi2:
    def __init__(self, scope: Any) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        return None


@pytest.mark.parametrize(
    ("target", "verdict"),
    [
        ("zero_arguments", "zero_arguments takes 0 positional argument(s)"),
        ("app", "ok"),
        ("Asgi2", "ok"),
    ],
)
def test_check_import_app_looks_at_the_signature(target: str, verdict: str) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable, "-m", "appserver", "check", "--import-app",
            "--app", f"tests.compat.test_uvicorn_keywords:{target}",
        ],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert verdict in output
    assert done.returncode == (0 if verdict == "ok" else 1)


def test_serve_with_neither_a_file_nor_a_module_says_both(tmp_path: Any) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "appserver", "serve", "nosuchmodule:app"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "no file named 'nosuchmodule:app' and no module named 'nosuchmodule'" in done.stderr


def test_problems_come_in_file_order_with_the_values_as_written(tmp_path: Any) -> None:
    from appserver.config.sources import load

    path = tmp_path / "app.toml"
    path.write_text(
        'app = "a:b"\n[timeouts]\nkeep_alive = "0s"\n[limits]\nconcurrency = "many"\n'
        '[server]\nport = "x"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load(path).unwrap()
    lines = str(caught.value).splitlines()[1:]
    assert [line.split(": ", 1)[0].rsplit(":", 1)[-1] for line in lines] == ["3", "5", "7"]
    assert 'timeouts.keep_alive = "0s":' in lines[0]


def test_help_says_what_each_value_is_and_its_default() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "appserver", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    lines: dict[str, str] = {}
    current = ""
    for line in done.stdout.splitlines():
        if line.startswith("  --"):
            current = line.split()[0]
            lines[current] = line
        elif current and line.startswith("      "):
            lines[current] += " " + line.strip()  # the wrapped rest of its help
    assert " INTEGER " in lines["--port"] and "[default: 8000]" in lines["--port"]
    assert " SECONDS " in lines["--timeout-keep-alive"]
    assert " SIZE " in lines["--limit-body-size"]
    assert "[auto|h11|httptools]" in lines["--http"]


def test_a_single_valued_flag_given_twice_is_an_error() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "appserver", "check", "--app", "a:b", "--port", "1", "--port", "2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--port: given 2 times ('1', '2'); give it once" in done.stderr


def test_an_app_string_that_imports_nothing_names_where_it_came_from(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "appserver", "serve"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env={**os.environ, "APPSERVER_APP": "myapp:app"},
    )
    assert done.returncode == 1
    message = done.stderr
    assert "cannot import app 'myapp:app' (from environment APPSERVER_APP)" in message
    assert str(tmp_path) in message and "APPSERVER_APP_DIR" in message


# Every keyword of uvicorn 0.54's Config.__init__, with a value in uvicorn's form.
UVICORN_KEYWORDS: dict[str, Any] = {
    "host": "0.0.0.0", "port": 8001, "uds": None, "fd": None, "loop": "asyncio",
    "http": "h11", "http2": False, "ws": "wsproto", "ws_max_size": 1024, "ws_max_queue": 8,
    "ws_ping_interval": 10.0, "ws_ping_timeout": None, "ws_per_message_deflate": False,
    "lifespan": "off", "env_file": None, "log_config": None, "log_level": logging.WARNING,
    "access_log": False, "use_colors": False, "interface": "asgi3", "reload": False,
    "reload_dirs": ["."], "reload_delay": 0.5, "reload_includes": ["*.py"],
    "reload_excludes": [".*"], "workers": 2, "proxy_headers": True, "server_header": False,
    "date_header": False, "forwarded_allow_ips": "127.0.0.1,10.0.0.0/8", "root_path": "/api",
    "limit_concurrency": 100, "limit_max_requests": 1000, "limit_max_requests_jitter": 10,
    "backlog": 128, "timeout_keep_alive": 5, "timeout_notify": 30, "timeout_graceful_shutdown": 10,
    "timeout_worker_healthcheck": 5, "callback_notify": None, "ssl_keyfile": "key.pem",
    "ssl_certfile": "cert.pem", "ssl_keyfile_password": "pw", "ssl_version": 17,
    "ssl_cert_reqs": 0, "ssl_ca_certs": None, "ssl_ciphers": "TLSv1",
    "ssl_context_factory": None, "headers": [("x-a", "1")], "factory": False,
    "h11_max_incomplete_event_size": 16384, "reset_contextvars": True,
}  # fmt: skip


def test_every_uvicorn_keyword_is_accepted_with_uvicorns_value_forms() -> None:
    assert len(UVICORN_KEYWORDS) + 1 == 53  # and `app`
    config = Config(app, **UVICORN_KEYWORDS)
    for name, value in UVICORN_KEYWORDS.items():
        got = getattr(config, name)
        if name == "log_level":
            assert got == "warning"
        elif name == "forwarded_allow_ips":
            assert got == ["127.0.0.1", "10.0.0.0/8"]
        else:
            assert got == value, name
