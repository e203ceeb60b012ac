"""The compiled accelerator: the request path built with mypyc, when it was.

:data:`COMPILED` is the sans-IO HTTP core (the cycle, the parser adapters, framing, limits) and
the runtime's per-request path (the HTTP protocol, the connection core, the ASGI cycle's
``receive``/``send``): with them compiled and the access log off, the only Python frames a plain
httptools request runs are the app's and asyncio's own.

``make install`` (``pip install -e .``) compiles :data:`COMPILED` into extension modules beside
their sources (setup.py; mypyc compiles the same mypy-strict code, nothing is written twice).
The compiled path is an accelerator, never a requirement: when the build failed, or with
``APPSERVER_PURE_PYTHON=1``, or when any source is newer than its compiled module (an edit not
rebuilt yet), every one of them is imported from its ``.py`` instead. All or none: compiled
modules call each other directly, so a mix could hold two copies of one class.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

COMPILED: tuple[str, ...] = (
    "appserver.http.cycle",
    "appserver.http.forwarded",
    "appserver.http.framing",
    "appserver.http.httptools",
    "appserver.http.limits",
    "appserver.http.parser",
    "appserver.http.proxy",
    "appserver.http.response",
    "appserver.http.strict",
    "appserver.http.target",
    "appserver.runtime.asgi_cycle",
    "appserver.runtime.connection",
    "appserver.runtime.http_protocol",
)
PURE_VARIABLE = "APPSERVER_PURE_PYTHON"  # not a setting: read before any config exists

try:
    from mypy_extensions import mypyc_attr as mypyc_attr  # re-exported: the compiled modules use it
except ImportError:  # pure Python without mypy installed: the decorator only informs mypyc

    def mypyc_attr(*_: str, **__: object) -> Any:  # type: ignore[misc]
        return lambda cls: cls


_HERE = os.path.dirname(os.path.abspath(__file__))


def _paths(name: str) -> tuple[str, str | None]:
    """The module's .py, and its compiled extension module if there is one."""
    base = os.path.join(os.path.dirname(_HERE), *name.split("."))
    source = base + ".py"
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if os.path.exists(base + suffix):
            return source, base + suffix
    return source, None


def _decide() -> tuple[bool, str]:
    """(use the compiled modules, why not if not)."""
    if os.environ.get(PURE_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on"):
        return False, f"{PURE_VARIABLE} is set"
    for name in COMPILED:
        source, built = _paths(name)
        if built is None:
            return False, "not built (pure-Python modules)"
        if os.path.getmtime(source) > os.path.getmtime(built):
            return False, f"{name} changed since it was compiled: run make install"
    return True, "compiled (mypyc)"


USE_COMPILED, REASON = _decide()


class _PureFinder:
    """Imports the accelerated modules from their sources (their extension modules sit in
    the same directory and would be found first)."""

    @staticmethod
    def find_spec(
        name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> Any:
        if name not in COMPILED:
            return None
        source, _ = _paths(name)
        return importlib.util.spec_from_file_location(name, source)


if not USE_COMPILED and not any(isinstance(f, _PureFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _PureFinder())


def describe() -> str:
    """For ``appserver --version``: which implementation of the HTTP core is active."""
    return REASON
