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
