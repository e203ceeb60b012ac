"""Several listeners from one file, in real processes: plain, TLS, Unix and IPv6 side by side,
dual-stack, systemd socket activation through a launcher, and every bad listener refused
before anything is served, with one line naming it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import stat
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.lifecycle.procs import (
    Proc,
    connect_refused,
    free_port,
    running,
    stop,
    wait_for_output,
)
from tests.listeners.certs import Certs, make_certs

pytestmark = pytest.mark.timeout(60)


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Certs]:
    yield make_certs(tmp_path_factory.mktemp("certs"))


def write_config(path: Path, listeners: str) -> Path:
    path.write_text('app = "tests.listeners.apps:app"\n\n' + textwrap.dedent(listeners))
    return path


@contextlib.contextmanager
def serving(config: Path, count: int, env: dict[str, str] | None = None) -> Iterator[Proc]:
    """``appserver serve config`` until it has printed ``count`` Listening lines."""
    with running(["-m", "appserver", "serve", str(config)], env=env) as proc:
        deadline = time.monotonic() + 15
        while proc.output().count("Listening on ") < count:
            assert proc.alive(), proc.output()
            assert time.monotonic() < deadline, proc.output()
            time.sleep(0.05)
        yield proc


def fails_to_start(config: Path, env: dict[str, str] | None = None) -> str:
    with running(["-m", "appserver", "serve", str(config)], env=env) as proc:
        result = proc.wait()
    assert result.returncode != 0
    assert "Listening on" not in result.output, result.output
    return result.output


def get_json(url: str, **kw: Any) -> dict[str, Any]:
    response = httpx.get(url, timeout=5, **kw)
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    return data


@needs_ipv6
def test_plain_tls_unix_and_ipv6_side_by_side(tmp_path: Path, certs: Certs) -> None:
    plain, secure, v6 = free_port(), free_port(), free_port()
    sock_path = tmp_path / "app.sock"
    config = write_config(
        tmp_path / "app.toml",
        f"""
        [[listeners]]
        bind = "127.0.0.1:{plain}"

        [[listeners]]
        bind = "127.0.0.1:{secure}"
        [listeners.tls]
        certfile = "{certs.cert}"
        keyfile = "{certs.key}"

        [[listeners]]
        bind = "unix:{sock_path}"
        unix_mode = "0660"

        [[listeners]]
        bind = "[::1]:{v6}"
        """,
    )
    with serving(config, 4) as proc:
        output = proc.output()
        assert f"Listening on http://127.0.0.1:{plain}" in output
        assert f"Listening on https://127.0.0.1:{secure}" in output
        assert f"Listening on unix:{sock_path}" in output
        assert f"Listening on http://[::1]:{v6}" in output
        assert get_json(f"http://127.0.0.1:{plain}/")["scheme"] == "http"
        tls = get_json(
            f"https://127.0.0.1:{secure}/",
            verify=ssl.create_default_context(cafile=str(certs.ca_pem)),
        )
        assert tls["scheme"] == "https" and tls["tls"] is True
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock_path))) as client:
            assert client.get("http://local/").json()["scheme"] == "http"
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o660
        assert get_json(f"http://[::1]:{v6}/")["server"][0] == "::1"
        # Plain HTTP and a bare TCP close on the TLS port (uvloop here): that connection
        # ends, nothing is logged above debug, the port serves on.
        with socket.create_connection(("127.0.0.1", secure), timeout=5) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            raw.settimeout(5)
            with contextlib.suppress(OSError):
                assert not raw.recv(100).startswith(b"HTTP/1.1 200")
        socket.create_connection(("127.0.0.1", secure), timeout=5).close()
        tls = get_json(
            f"https://127.0.0.1:{secure}/",
            verify=ssl.create_default_context(cafile=str(certs.ca_pem)),
        )
        assert tls["scheme"] == "https"
        stop(proc)
        after = proc.output()[len(output) :]
        assert "ERROR" not in after and "WARNING" not in after and "Traceback" not in after, after
    assert not sock_path.exists(), "the unix socket file was left behind"


@needs_ipv6
def test_ipv6_any_is_dual_stack_unless_ipv6_only(tmp_path: Path) -> None:
    dual, only = free_port(), free_port()
    config = write_config(
        tmp_path / "app.toml",
        f"""
        [[listeners]]
        bind = "[::]:{dual}"

        [[listeners]]
        bind = "[::]:{only}"
        ipv6_only = true
        """,
    )
    with serving(config, 2) as proc:
        assert get_json(f"http://127.0.0.1:{dual}/")["scheme"] == "http"
        assert get_json(f"http://[::1]:{only}/")["scheme"] == "http"
        assert connect_refused(only)
        stop(proc)


LAUNCHER = """
import os, socket, sys
# What systemd does for a .socket unit: listening sockets at fds 3 and 4, their names, and
# LISTEN_PID set to the pid of the process it starts (exec keeps the pid).
ports = [int(p) for p in sys.argv[1].split(",")]
socks = []
for port in ports:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(16)
    socks.append(sock)
# Out of the way first: a new socket may itself have been given fd 3 or 4.
for i, sock in enumerate(socks):
    os.dup2(sock.fileno(), 20 + i)
for sock in socks:
    sock.close()
for i in range(len(ports)):
    os.dup2(20 + i, 3 + i)
    os.set_inheritable(3 + i, True)
    os.close(20 + i)
env = dict(os.environ, LISTEN_FDS="2", LISTEN_FDNAMES=sys.argv[2])
pid = str(os.getpid()) if sys.argv[3] == "self" else sys.argv[3]
env["LISTEN_PID"] = pid
os.execve(sys.executable, [sys.executable, "-m", "appserver", "serve", sys.argv[4]], env)
"""


def launch(
    tmp_path: Path, ports: list[int], names: str, config: Path, pid: str = "self"
) -> list[str]:
    launcher = tmp_path / "launcher.py"
    launcher.write_text(LAUNCHER)
    return [str(launcher), ",".join(map(str, ports)), names, pid, str(config)]


def test_systemd_socket_activation_by_name(tmp_path: Path) -> None:
    web, admin = free_port(), free_port()
    config = write_config(
        tmp_path / "app.toml",
        """
        [[listeners]]
        bind = "systemd:web"

        [[listeners]]
        bind = "systemd:admin"
        """,
    )
    with running(launch(tmp_path, [web, admin], "web:admin", config)) as proc:
        wait_for_output(proc, f"Listening on http://127.0.0.1:{admin}")
        seen = get_json(f"http://127.0.0.1:{web}/")
        assert seen["server"][1] == web
        assert seen["systemd_variables"] == [], "the app saw the socket-activation variables"
        assert get_json(f"http://127.0.0.1:{admin}/")["server"][1] == admin
        stop(proc)


def test_systemd_sockets_for_another_process_are_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path / "app.toml", '[[listeners]]\nbind = "systemd"\n')
    with running(launch(tmp_path, [free_port(), free_port()], "a:b", config, pid="1")) as proc:
        result = proc.wait()
    assert result.returncode != 0
    assert "LISTEN_PID=1 is not this process" in result.output
    assert "Listening on" not in result.output


def one_error_line(output: str, *parts: str) -> None:
    lines = [line for line in output.splitlines() if all(part in line for part in parts)]
    assert len(lines) == 1, output
    assert "Traceback" not in output, output


def test_bad_listeners_fail_before_anything_is_served(tmp_path: Path, certs: Certs) -> None:
    plain = free_port()
    first = f'[[listeners]]\nbind = "127.0.0.1:{plain}"\n\n'
    cases = {
        "unix-missing-dir": (
            f'[[listeners]]\nbind = "unix:{tmp_path}/nope/app.sock"\n',
            ("listeners[1]", "the directory", "does not exist"),
        ),
        "fd-not-open": (
            '[[listeners]]\nbind = "fd://99"\n',
            ("listeners[1]", "fd://99", "not open"),
        ),
        "systemd-without-variables": (
            '[[listeners]]\nbind = "systemd"\n',
            ("LISTEN_FDS is not set",),
        ),
        "encrypted-key-without-password": (
            f'[[listeners]]\nbind = "127.0.0.1:{free_port()}"\n[listeners.tls]\n'
            f'certfile = "{certs.cert}"\nkeyfile = "{certs.encrypted_key(b"pw")}"\n',
            ("listeners[1].tls.keyfile", "encrypted and no password given"),
        ),
        "key-does-not-match": (
            f'[[listeners]]\nbind = "127.0.0.1:{free_port()}"\n[listeners.tls]\n'
            f'certfile = "{certs.cert}"\nkeyfile = "{certs.other_key()}"\n',
            ("listeners[1].tls.keyfile", "does not match the certificate"),
        ),
    }
    for name, (listener, parts) in cases.items():
        config = write_config(tmp_path / f"{name}.toml", first + listener)
        output = fails_to_start(config)
        one_error_line(output, *parts)
        assert connect_refused(plain), name


def test_listen_fds_without_listen_pid(tmp_path: Path) -> None:
    config = write_config(tmp_path / "app.toml", '[[listeners]]\nbind = "systemd"\n')
    output = fails_to_start(config, env={"LISTEN_FDS": "1"})
    one_error_line(output, "LISTEN_FDS is set but LISTEN_PID is not")


def test_appserver_run_with_uvicorn_tls_keywords(tmp_path: Path, certs: Certs) -> None:
    port = free_port()
    code = (
        "import appserver\n"
        f"appserver.run('tests.listeners.apps:app', port={port}, "
        f"ssl_certfile={str(certs.cert)!r}, ssl_keyfile={str(certs.key)!r})\n"
    )
    with running(["-c", code]) as proc:
        wait_for_output(proc, f"Listening on https://127.0.0.1:{port}")
        context = ssl.create_default_context(cafile=str(certs.ca_pem))
        assert get_json(f"https://127.0.0.1:{port}/", verify=context)["scheme"] == "https"
        stop(proc)


def check(*args: str) -> tuple[int, str]:
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "appserver", "check", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.returncode, result.stdout + result.stderr


def test_check_reports_certificate_problems_without_binding(tmp_path: Path, certs: Certs) -> None:
    port = free_port()
    missing = write_config(
        tmp_path / "missing.toml",
        f'[[listeners]]\nbind = "127.0.0.1:{port}"\n[listeners.tls]\ncertfile = "{tmp_path}/no.pem"\n',
    )
    code, output = check(str(missing))
    assert code == 1 and f"listeners[0].tls.certfile: {tmp_path}/no.pem does not exist" in output
    mismatch = write_config(
        tmp_path / "mismatch.toml",
        f'[[listeners]]\nbind = "127.0.0.1:{port}"\n[listeners.tls]\n'
        f'certfile = "{certs.cert}"\nkeyfile = "{certs.other_key()}"\n',
    )
    code, output = check(str(mismatch))
    assert code == 1 and "does not match the certificate" in output
    expiring = certs.expiring_cert(5)
    soon = write_config(
        tmp_path / "soon.toml",
        f'[[listeners]]\nbind = "127.0.0.1:{port}"\n[listeners.tls]\ncertfile = "{expiring}"\n',
    )
    code, output = check(str(soon))
    assert code == 0, output
    assert f"warning: listeners[0].tls.certfile: the certificate in {expiring} expires on" in output
    good = write_config(
        tmp_path / "good.toml",
        f'[[listeners]]\nbind = "127.0.0.1:{port}"\n[listeners.tls]\n'
        f'certfile = "{certs.cert}"\nkeyfile = "{certs.key}"\n',
    )
    code, output = check(str(good))
    assert code == 0 and "warning" not in output, output
    assert connect_refused(port)


def served_certificate(port: int, certs: Certs) -> bytes:
    context = ssl.create_default_context(cafile=str(certs.ca_pem))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_sighup_reloads_certificates_in_place(tmp_path: Path, certs: Certs) -> None:
    """In-process: a rotated certificate is served to new connections after SIGHUP; an invalid
    config changes nothing."""
    port = free_port()
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    cert.write_bytes(certs.cert.read_bytes())
    key.write_bytes(certs.key.read_bytes())
    config = write_config(
        tmp_path / "app.toml",
        f"""
        [[listeners]]
        bind = "127.0.0.1:{port}"
        [listeners.tls]
        certfile = "{cert}"
        keyfile = "{key}"
        """,
    )
    with serving(config, 1) as proc:
        before = served_certificate(port, certs)
        rotated = certs.ca.issue_cert("127.0.0.1")
        rotated.cert_chain_pems[0].write_to_path(str(cert))
        rotated.private_key_pem.write_to_path(str(key))
        assert served_certificate(port, certs) == before  # nothing happens without SIGHUP
        proc.signal(signal.SIGHUP)
        wait_for_output(proc, "Reloaded TLS certificates on 1 listener(s)")
        after = served_certificate(port, certs)
        assert after != before
        assert after == ssl.PEM_cert_to_DER_cert(rotated.cert_chain_pems[0].bytes().decode())
        config.write_text(config.read_text() + "\n[limits]\nconcurrency = 0\n")
        proc.signal(signal.SIGHUP)
        wait_for_output(proc, "Reload refused: 1 problem; nothing changed")
        assert served_certificate(port, certs) == after
        stop(proc)
