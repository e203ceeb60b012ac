"""Listeners as configuration: bind forms, every source, layering, and messages that name the
listener with its file:line. Nothing here binds a socket."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appserver import Config
from appserver.config.listeners import Address, parse_bind
from appserver.config.sources import load
from appserver.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("0.0.0.0:8443", Address("tcp", host="0.0.0.0", port=8443)),
        ("localhost:0", Address("tcp", host="localhost", port=0)),
        ("[::]:8443", Address("tcp", host="::", port=8443)),
        ("[::1]:80", Address("tcp", host="::1", port=80)),
        ("unix:/run/app.sock", Address("unix", path="/run/app.sock")),
        ("fd://3", Address("fd", fd=3)),
        ("systemd", Address("systemd")),
        ("systemd:web", Address("systemd", name="web")),
    ],
)
def test_bind_forms(text: str, address: Address) -> None:
    assert parse_bind(text) == address


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("8000", "expected a port after the host"),
        ("host", "expected a port after the host"),
        ("::1:80", "put an IPv6 address in brackets"),
        ("[::1]80", r"expected \[IPv6\]:PORT"),
        ("a:99999", "expected a port 0..65535"),
        ("a:-1", "expected a port 0..65535"),
        ("unix:", "expected a path after unix:"),
        ("fd://x", "expected a file descriptor number"),
        ("systemd:", "expected a socket name"),
        (":80", "expected"),
    ],
)
def test_bad_bind_forms(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_bind(text)


def test_flat_keywords_mean_one_listener() -> None:
    assert [x.bind for x in Config(app="a:b").listener_configs()] == ["127.0.0.1:8000"]
    assert [x.bind for x in Config(app="a:b", host="::", port=9).listener_configs()] == ["[::]:9"]
    assert [x.bind for x in Config(app="a:b", uds="/tmp/a.sock").listener_configs()] == [
        "unix:/tmp/a.sock"
    ]
    assert [x.bind for x in Config(app="a:b", fd=5).listener_configs()] == ["fd://5"]
    assert not Config(app="a:b").is_ssl
    assert Config(app="a:b", ssl_certfile="c.pem").is_ssl
    assert Config(app="a:b", listeners=[{"bind": "a:1", "tls": {"certfile": "c"}}]).is_ssl


def test_python_api_takes_bind_strings_and_tables() -> None:
    config = Config(app="a:b", listeners=["0.0.0.0:80", {"bind": "unix:/s", "unix_mode": 0o660}])
    first, second = config.listener_configs()
    assert first.bind == "0.0.0.0:80" and first.tls is None
    assert second.mode == 0o660


def test_mixing_listeners_with_flat_keywords_says_which_to_use() -> None:
    with pytest.raises(ConfigError, match="listeners and port are exclusive: write the address"):
        Config(app="a:b", listeners=["a:1"], port=5)
    with pytest.raises(ConfigError, match="listeners and ssl_certfile are exclusive"):
        Config(app="a:b", listeners=["a:1"], ssl_certfile="c.pem")


def test_listener_option_rules() -> None:
    cases = {
        "unix_mode applies to a unix: bind only": {"bind": "a:1", "unix_mode": "0660"},
        "ipv6_only applies to an IPv6 bind": {"bind": "a:1", "ipv6_only": True},
        "reuse_port applies to a HOST:PORT bind only": {"bind": "unix:/s", "reuse_port": True},
        "expected an octal mode": {"bind": "unix:/s", "unix_mode": "rw-rw----"},
        "keyfile_password and keyfile_password_file are exclusive": {
            "bind": "a:1",
            "tls": {"certfile": "c", "keyfile_password": "x", "keyfile_password_file": "f"},
        },
        'client_certs = "optional" needs ca_certs': {
            "bind": "a:1",
            "tls": {"certfile": "c", "client_certs": "optional"},
        },
    }
    for message, listener in cases.items():
        with pytest.raises(ConfigError, match=message):
            Config(app="a:b", listeners=[listener])


def test_file_errors_name_the_listener_and_its_line(tmp_path: Path) -> None:
    path = tmp_path / "app.toml"
    path.write_text(
        'app = "a:b"\n'  # 1
        "\n"
        "[[listeners]]\n"  # 3
        'bind = "0.0.0.0:8443"\n'
        "[listeners.tls]\n"  # 5
        'certfile = "c.pem"\n'
        'min_version = "TLSv1"\n'  # 7
        "\n"
        "[[listeners]]\n"  # 9
        'bind = "nowhere"\n'  # 10
        "backlog = 0\n"  # 11
    )
    with pytest.raises(ConfigError) as caught:
        load(path).unwrap()
    lines = str(caught.value).splitlines()[1:]
    assert lines == [
        f'{path}:7: listeners[0].tls.min_version = "TLSv1": expected one of "TLSv1.2", "TLSv1.3"',
        f'{path}:10: listeners[1].bind = "nowhere": expected a port after the host '
        "(nowhere:PORT), got 'nowhere'",
        f"{path}:11: listeners[1].backlog = 0: expected an integer >= 1",
    ]


def test_environment_and_flags_take_bind_addresses(tmp_path: Path) -> None:
    environ = {"APPSERVER_BIND": "127.0.0.1:8001, unix:/tmp/a.sock", "APPSERVER_APP": "a:b"}
    config = load(environ=environ).unwrap()
    assert [x.bind for x in config.listener_configs()] == ["127.0.0.1:8001", "unix:/tmp/a.sock"]
    tables = [{"bind": "127.0.0.1:8443", "tls": {"certfile": "c.pem"}}]
    config = load(environ={"APPSERVER_BIND": json.dumps(tables)}).unwrap()
    assert config.listener_configs()[0].tls is not None
    with pytest.raises(ConfigError, match=r'APPSERVER_BIND="x:y": listeners\[0\].bind: expected'):
        load(environ={"APPSERVER_BIND": "x:y"}).unwrap()


def test_listeners_from_a_higher_source_replace_the_files_host_and_port(tmp_path: Path) -> None:
    path = tmp_path / "app.toml"
    path.write_text('app = "a:b"\n[server]\nhost = "0.0.0.0"\nport = 8000\n')
    config = load(path, environ={"APPSERVER_BIND": "127.0.0.1:9000"}).unwrap()
    assert [x.bind for x in config.listener_configs()] == ["127.0.0.1:9000"]


def test_flat_keywords_above_a_files_listeners_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.toml"
    path.write_text('app = "a:b"\n[[listeners]]\nbind = "0.0.0.0:8443"\n')
    with pytest.raises(ConfigError) as caught:
        load(path, environ={"APPSERVER_PORT": "9000"}).unwrap()
    message = str(caught.value)
    assert "listeners and port are exclusive" in message
    assert "APPSERVER_PORT" in message and f"listeners ({path}:2)" in message


def test_both_in_one_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.toml"
    path.write_text('app = "a:b"\n[server]\nport = 1\n[[listeners]]\nbind = "0.0.0.0:8443"\n')
    with pytest.raises(ConfigError, match="listeners and the flat socket settings are exclusive"):
        load(path).unwrap()
