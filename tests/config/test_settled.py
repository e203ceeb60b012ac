"""SettledConfig: a validated Config copied into plain objects that pickle without pydantic."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from appserver.config.model import Config
from appserver.config.settled import Settled, SettledConfig
from tests.listeners.certs import make_certs

LISTENERS: list[dict[str, Any]] = [
    {
        "bind": "127.0.0.1:8443",
        "tls": {"certfile": "server.pem", "client_certs": "optional", "ca_certs": "ca.pem"},
    },
    {"bind": "unix:/tmp/app.sock", "unix_mode": "0660"},
]

CONFIGS = {
    "flat": lambda: Config(
        "tests.introspect_app:app",
        port=9000,
        headers=[("x-a", "b")],
        forwarded_allow_ips="10.0.0.1,10.0.0.2",
        health_path="/healthz",
        metrics_bind="127.0.0.1:9100",
        access_log=False,
    ),
    "listeners": lambda: Config("tests.introspect_app:app", listeners=LISTENERS),
}


@pytest.fixture(params=sorted(CONFIGS))
def config(request: pytest.FixtureRequest) -> Config:
    made: Config = CONFIGS[request.param]()
    return made


def test_every_field_and_property_reads_the_same(config: Config) -> None:
    settled = SettledConfig(config)
    for name in type(config).model_fields:
        assert getattr(settled, name) == getattr(config, name), name
    for name in ("encoded_headers", "is_ssl", "metrics_route", "ops_paths", "reload_patterns"):
        assert getattr(settled, name) == getattr(config, name), name
    assert settled.model_fields_set == config.model_fields_set
    assert settled.listener_configs() == config.listener_configs()
    for plain, model in zip(settled.listener_configs(), config.listener_configs(), strict=True):
        assert plain.address == model.address
        assert plain.scheme == model.scheme
        assert plain.mode == model.mode


def test_a_changed_listener_is_not_equal() -> None:
    config = Config("tests.introspect_app:app", listeners=LISTENERS)
    other = Config("tests.introspect_app:app", listeners=[LISTENERS[0]])
    settled = SettledConfig(config)
    assert settled.listeners != other.listeners
    assert settled.listeners[0] == other.listeners[0]
    tls = {**LISTENERS[0]["tls"], "client_certs": "required"}
    changed = Config("tests.introspect_app:app", listeners=[{**LISTENERS[0], "tls": tls}])
    assert settled.listeners[0] != changed.listeners[0]  # the difference is in the nested TLS


def test_load_is_live_and_asgi_version_follows_it() -> None:
    settled = SettledConfig(Config("tests.introspect_app:app"))
    assert not settled.loaded
    with pytest.raises(AttributeError, match=r"config.load\(\) has not been called"):
        _ = settled.loaded_app
    settled.load()
    assert settled.loaded
    from tests.introspect_app import app

    assert settled.loaded_app is app
    assert settled.asgi_version == "3.0"


def test_the_pickled_copy_loads_in_a_process_without_pydantic(tmp_path: Path) -> None:
    # load() imports the app, resolves the protocols and builds the TLS contexts from real
    # certificates; metrics and health are on.
    certs = make_certs(tmp_path)
    tls = {"certfile": str(certs.cert), "keyfile": str(certs.key), "ca_certs": str(certs.ca_pem)}
    config = Config(
        "tests.introspect_app:app",
        listeners=[{"bind": "127.0.0.1:8443", "tls": tls}],
        health_path="/healthz",
        metrics_bind="127.0.0.1:9100",
    )
    payload = pickle.dumps(SettledConfig(config))
    code = (
        "import pickle, sys; settled = pickle.loads(sys.stdin.buffer.read()); "
        "import appserver.server; settled.load(); "
        "print(sorted(m for m in sys.modules if m.startswith(('pydantic', 'typer')))); "
        "print(settled.listener_configs()[0].address)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], input=payload, capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "[]"
    assert lines[1] == repr(config.listener_configs()[0].address)


def test_settled_repr_names_the_fields() -> None:
    listener = Settled(
        Config("tests.introspect_app:app", listeners=LISTENERS).listener_configs()[1]
    )
    assert repr(listener).startswith("Settled(bind='unix:/tmp/app.sock'")
