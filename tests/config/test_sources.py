"""Layering: every source, the precedence between each pair, and the shape of every message."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from appserver import Config
from appserver.config.sources import Layer, file_layer, load, overrides_layer, resolve
from appserver.errors import ConfigError

SOURCES = ["file", "dotenv", "environ", "override"]


def sources_setting_port(tmp_path: Path, ports: dict[str, int]) -> dict[str, Any]:
    """Keyword arguments for load() where each named source sets server.port."""
    kwargs: dict[str, Any] = {}
    if "file" in ports:
        path = tmp_path / "app.toml"
        path.write_text(f"[server]\nport = {ports['file']}\n")
        kwargs["path"] = path
    if "dotenv" in ports:
        env_file = tmp_path / ".env"
        env_file.write_text(f"APPSERVER_PORT={ports['dotenv']}\n")
        kwargs["env_file"] = env_file
    if "environ" in ports:
        kwargs["environ"] = {"APPSERVER_PORT": str(ports["environ"])}
    if "override" in ports:
        kwargs["overrides"] = {"port": str(ports["override"])}
    return kwargs


@pytest.mark.parametrize("source", SOURCES)
def test_each_source_beats_the_default(tmp_path: Path, source: str) -> None:
    resolved = load(**sources_setting_port(tmp_path, {source: 9001}))
    assert resolved.config is not None
    assert resolved.config.port == 9001
    assert resolved.origin("port").kind == source
    assert resolved.origin("host").kind == "default"


@pytest.mark.parametrize(("lower", "higher"), list(itertools.combinations(SOURCES, 2)))
def test_precedence_between_each_pair(tmp_path: Path, lower: str, higher: str) -> None:
    resolved = load(**sources_setting_port(tmp_path, {lower: 1111, higher: 2222}))
    assert resolved.config is not None
    assert resolved.config.port == 2222
    assert resolved.origin("port").kind == higher


def test_all_four_sources_together(tmp_path: Path) -> None:
    ports = {"file": 1, "dotenv": 2, "environ": 3, "override": 4}
    resolved = load(**sources_setting_port(tmp_path, ports))
    assert resolved.config is not None
    assert resolved.config.port == 4


def test_origins_name_file_line_dotenv_line_and_variable(tmp_path: Path) -> None:
    path = tmp_path / "app.toml"
    path.write_text('app = "m:a"\n[server]\nhost = "0.0.0.0"\n')
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nexport APPSERVER_PORT=81\nOTHER=ignored\n")
    resolved = load(path, env_file=env_file, environ={"APPSERVER_LOG_LEVEL": "DEBUG"})
    assert resolved.config is not None
    assert str(resolved.origin("host")) == f"{path}:3"
    assert str(resolved.origin("port")) == f"{env_file}:2 APPSERVER_PORT"
    assert str(resolved.origin("log_level")) == "environment APPSERVER_LOG_LEVEL"
    assert str(resolved.origin("backlog")) == "default"
    assert resolved.config.log_level == "debug"


def test_from_sources_classmethod(tmp_path: Path) -> None:
    path = tmp_path / "app.toml"
    path.write_text(
        'app = "m:a"\n[timeouts]\nkeep_alive = "500ms"\n[websocket]\nmax_size = "64KiB"\n'
    )
    config = Config.from_sources(
        path=path,
        environ={"APPSERVER_LIMIT_CONCURRENCY": "10", "HOME": "/root"},
        overrides={"limits.max_requests": 5, "port": 0},
    )
    assert config.timeout_keep_alive == 0.5
    assert config.ws_max_size == 64 * 1024
    assert config.limit_concurrency == 10
    assert config.limit_max_requests == 5
    assert config.port == 0


def test_from_sources_raises_every_error(tmp_path: Path) -> None:
    path = tmp_path / "prod.toml"
    path.write_text('[limits]\nconcurrency = "many"\n')
    with pytest.raises(ConfigError) as info:
        Config.from_sources(path=path, environ={"APPSERVER_PORT": "80a"})
    assert [str(e) for e in info.value.errors] == [
        f'{path}:2: limits.concurrency = "many": expected an integer >= 1',
        'APPSERVER_PORT="80a": expected an integer 0..65535',
    ]


# --- environment text ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("false", False), ("1", True), ("0", False), ("yes", True), ("NO", False)],
)
def test_booleans(text: str, expected: bool) -> None:
    config = load(environ={"APPSERVER_ACCESS_LOG": text}).unwrap()
    assert config.access_log is expected


@pytest.mark.parametrize("text", ["10.0.0.0/8, 192.168.1.1", '["10.0.0.0/8", "192.168.1.1"]'])
def test_lists_comma_separated_or_json(text: str) -> None:
    config = load(environ={"APPSERVER_FORWARDED_ALLOW_IPS": text}).unwrap()
    assert config.forwarded_allow_ips == ["10.0.0.0/8", "192.168.1.1"]


@pytest.mark.parametrize(
    "text", ["x-a: 1, x-b: 2", '["x-a: 1", "x-b: 2"]', '{"x-a": "1", "x-b": "2"}']
)
def test_headers_from_the_environment(text: str) -> None:
    config = load(environ={"APPSERVER_HEADERS": text}).unwrap()
    assert config.headers == [("x-a", "1"), ("x-b", "2")]


def test_empty_or_none_unsets_an_optional_setting(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text("[limits]\nconcurrency = 5\n")
    assert (
        load(path, environ={"APPSERVER_LIMIT_CONCURRENCY": ""}).unwrap().limit_concurrency is None
    )
    assert (
        load(path, environ={"APPSERVER_LIMIT_CONCURRENCY": "none"}).unwrap().limit_concurrency
        is None
    )


def test_durations_and_sizes_from_the_environment() -> None:
    config = load(
        environ={"APPSERVER_TIMEOUT_KEEP_ALIVE": "2m", "APPSERVER_WS_MAX_SIZE": "10MiB"}
    ).unwrap()
    assert config.timeout_keep_alive == 120.0
    assert config.ws_max_size == 10 * 1024 * 1024


def test_bad_json_names_the_variable() -> None:
    (error,) = load(environ={"APPSERVER_HEADERS": "[oops"}).errors
    assert str(error).startswith('APPSERVER_HEADERS="[oops": expected valid JSON')


def test_unrelated_variables_are_ignored() -> None:
    resolved = load(environ={"PATH": "/bin", "APPSERVER": "x", "APPSERVERPORT": "1"})
    assert resolved.errors == [] and resolved.unknown == []


def test_unknown_appserver_variables_are_reported_with_a_suggestion(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("APPSERVER_LOG_LEVLE=debug\n")
    resolved = load(env_file=env_file, environ={"APPSERVER_PROT": "80"})
    assert resolved.config is not None  # a warning, not an error, unless strict
    assert [str(e) for e in resolved.unknown] == [
        f'{env_file}:1: APPSERVER_LOG_LEVLE="debug": unknown variable '
        "(did you mean APPSERVER_LOG_LEVEL?)",
        'APPSERVER_PROT="80": unknown variable (did you mean APPSERVER_PORT?)',
    ]
    with pytest.raises(ConfigError):
        resolved.unwrap(strict_environ=True)


def test_python_only_settings_have_no_variable() -> None:
    (error,) = load(environ={"APPSERVER_CALLBACK_NOTIFY": "x"}).unknown
    assert "unknown variable" in str(error)


# --- messages -----------------------------------------------------------------------------------
def test_file_error_names_file_line_key_value_and_expectation(tmp_path: Path) -> None:
    path = tmp_path / "prod.toml"
    path.write_text("\n" * 11 + '[limits]\nconcurrency = "many"\n')
    (error,) = load(path).errors
    assert str(error) == f'{path}:13: limits.concurrency = "many": expected an integer >= 1'


def test_environment_error_names_the_variable() -> None:
    (error,) = load(environ={"APPSERVER_PORT": "80a"}).errors
    assert str(error) == 'APPSERVER_PORT="80a": expected an integer 0..65535'


def test_dotenv_error_names_file_line_and_variable(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("APPSERVER_BACKLOG=0\n")
    (error,) = load(env_file=env_file).errors
    assert str(error) == f'{env_file}:1: APPSERVER_BACKLOG="0": expected an integer >= 1'


def test_override_error_names_the_key() -> None:
    (error,) = load(overrides={"limits.concurrency": "x"}).errors
    assert str(error) == 'limits.concurrency = "x": expected an integer >= 1'


def test_unknown_override_suggests() -> None:
    (error,) = load(overrides={"limits.concurency": 1}).errors
    assert "did you mean limits.concurrency?" in str(error)


def test_negative_timeout(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text("[timeouts]\nkeep_alive = -1\ngraceful_shutdown = -5\n")
    errors = [str(e) for e in load(path).errors]
    assert errors == [
        f"{path}:2: timeouts.keep_alive = -1: expected a number of seconds or a string like "
        '"500ms", "30s", "5m", "1h", "1m30s" (> 0)',
        f"{path}:3: timeouts.graceful_shutdown = -5: expected a number of seconds or a string "
        'like "500ms", "30s", "5m", "1h", "1m30s" (>= 0)',
    ]


def test_every_bad_entry_of_a_table_at_its_own_key(tmp_path: Path) -> None:
    path = tmp_path / "prod.toml"
    path.write_text(
        '[headers.custom]\n"bad name" = "v"\ngood = "ok"\nx-a = "line\\nbreak"\n'
        'connection = "close"\n'
    )
    errors = [str(e) for e in load(path).errors]
    assert errors == [
        f'{path}:2: headers.custom."bad name" = "v": expected a header name that is an HTTP token',
        f'{path}:4: headers.custom.x-a = "line\\nbreak": expected a value without control '
        "characters",
        f'{path}:5: headers.custom.connection = "close": cannot be set here: the server frames '
        "each response and manages the connection itself (RFC 9110 §7.6.1, RFC 9112 §6)",
    ]


def test_a_bad_entry_of_a_variable_is_shown_in_the_variable_as_typed() -> None:
    (error,) = load(environ={"APPSERVER_HEADERS": "bad name: x, ok: y"}).errors
    assert str(error) == (
        'APPSERVER_HEADERS="bad name: x, ok: y": headers.custom."bad name": expected a header '
        "name that is an HTTP token"
    )


def test_every_error_at_once(tmp_path: Path) -> None:
    path = tmp_path / "prod.toml"
    path.write_text('[server]\nport = "x"\nbacklog = 0\nloop = "fast"\n[limits]\nconcurency = 1\n')
    resolved = load(path, environ={"APPSERVER_LOG_LEVEL": "loud"}, overrides={"fd": -1})
    assert len(resolved.errors) == 6
    assert resolved.config is None


def test_an_overridden_bad_value_is_still_reported(tmp_path: Path) -> None:
    path = tmp_path / "prod.toml"
    path.write_text("[server]\nport = -1\n")
    (error,) = load(path, overrides={"port": 80}).errors
    assert str(error).startswith(f"{path}:2: server.port = -1")


# --- rules across settings ---------------------------------------------------------------------
def test_uds_with_host_or_port_in_one_file(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[server]\nhost = "0.0.0.0"\nport = 80\nuds = "/tmp/s.sock"\n')
    (error,) = load(path).errors
    assert str(error) == (
        f'{path}:4: server.uds = "/tmp/s.sock": a Unix socket and a TCP host/port are '
        f"exclusive: also set server.host ({path}:2), server.port ({path}:3); remove one of them"
    )


def test_a_higher_source_may_switch_to_uds(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("[server]\nport = 80\n")
    config = load(path, environ={"APPSERVER_UDS": "/tmp/s.sock"}).unwrap()
    assert config.uds == "/tmp/s.sock"


def test_fd_with_uds_in_one_source() -> None:
    (error,) = load(environ={"APPSERVER_UDS": "/tmp/s", "APPSERVER_FD": "3"}).errors
    assert str(error) == (
        'APPSERVER_FD="3": an inherited fd and a Unix socket are exclusive: '
        "also set APPSERVER_UDS; remove one of them"
    )


def test_fd_with_uds_across_sources(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[server]\nuds = "/tmp/s"\n')
    (error,) = load(path, environ={"APPSERVER_FD": "3"}).errors
    assert str(error) == (
        f"uds and fd are exclusive: set one socket source "
        f"(set by server.uds ({path}:2), APPSERVER_FD)"
    )


def test_layers_are_plain_data() -> None:
    layer = overrides_layer({"port": 1})
    assert isinstance(layer, Layer)
    assert resolve([layer]).unwrap().port == 1


def test_file_layer_collects_syntax_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("x = \n")
    layer = file_layer(path)
    assert len(layer.errors) == 1
    assert resolve([layer]).config is None
