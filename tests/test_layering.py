"""The import directions hold at run time too: the data and sans-IO layers load no event loop.

``make lint`` checks the static import graph (import-linter contracts in pyproject.toml); this
checks what a fresh interpreter actually loads, which is what the lazy package ``__init__``
(PEP 562) is for.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import appserver

PROBE = """
import json, sys
for name in sys.argv[1:]:
    __import__(name)
print(json.dumps(sorted(m for m in sys.modules if m == "asyncio" or m == "uvloop"
                        or m.startswith(("appserver.runtime", "appserver.server")))))
"""


@pytest.mark.parametrize(
    "modules",
    [
        ["appserver"],
        ["appserver.config", "appserver.config.sources", "appserver.config.schema"],
        [
            "appserver.http",
            "appserver.http.cycle",
            "appserver.http.h11",
            "appserver.http.httptools",
        ],
        ["appserver.websocket.session"],
        ["appserver.errors", "appserver.types"],
    ],
)
def test_data_and_protocol_layers_load_no_loop(modules: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *modules], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []


def test_package_exposes_only_the_api() -> None:
    assert sorted(appserver.__all__) == ["Config", "Server", "__version__", "run"]
    assert dir(appserver) == sorted(appserver.__all__)
    from appserver.config.model import Config
    from appserver.server import Server, ServerState

    assert appserver.Config is Config
    assert appserver.Server is Server
    from appserver.runtime.state import ServerState as RuntimeServerState

    assert ServerState is RuntimeServerState
    with pytest.raises(AttributeError):
        _ = appserver.Any  # type: ignore[attr-defined]


def test_the_serving_path_loads_no_config_layer() -> None:
    # What the process appserver serve hands over to imports (appserver.serving): pydantic,
    # typer and click are a third of an idle server's memory.
    probe = (
        "import json, sys; import appserver.__main__, appserver.serving, appserver.server, "
        "appserver.config.settled; print(json.dumps(sorted(m for m in sys.modules if "
        "m.split('.')[0] in ('pydantic', 'pydantic_core', 'typer', 'click') "
        "or m in ('appserver.config.model', 'appserver.cli', 'importlib.metadata'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []
