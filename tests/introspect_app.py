"""An app that says what the process serving it holds: which modules, its argv and flags."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

WATCHED = (
    "pydantic",
    "pydantic_core",
    "typer",
    "click",
    "appserver.config.model",
    "importlib.metadata",
)


def _open_files() -> list[str]:
    """What descriptors past stdin, stdout and stderr point to."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        if int(name) <= 2:
            continue
        try:
            found.append(os.readlink(f"/proc/self/fd/{name}"))
        except OSError:
            continue  # the directory's own descriptor, closed by now
    return found


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    body = json.dumps(
        {
            "pid": os.getpid(),
            "modules": [name for name in WATCHED if name in sys.modules],
            "argv": sys.argv,
            "xoptions": sys._xoptions,
            "handoff_variable": "_APPSERVER_HANDOFF_FD" in os.environ,
            "write_through": sys.stdout.write_through,
            "open_files": _open_files(),
        }
    ).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
