"""The compiled accelerator and its pure-Python fallback (appserver._accel): which one loads,
and that --version says so. The byte-exact wire tests run on both (see .ci/run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appserver import _accel

ROOT = Path(__file__).resolve().parents[1]

# Whether the accelerator is active, and the file kinds every module of COMPILED came from.
PROBE = (
    "import importlib, appserver, appserver._accel as a; "
    "kinds = {importlib.import_module(m).__file__.rsplit('.', 1)[-1] for m in a.COMPILED}; "
    "print(a.USE_COMPILED, *sorted(kinds))"
)


def probe(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != _accel.PURE_VARIABLE}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
        timeout=30, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def test_the_pure_variable_loads_every_module_from_source() -> None:
    assert probe(APPSERVER_PURE_PYTHON="1") == "False py"


@pytest.mark.skipif(
    not _accel.USE_COMPILED, reason=f"the accelerator is not active here: {_accel.REASON}"
)
def test_the_compiled_modules_load_when_built() -> None:
    assert probe() == "True so"
    version = subprocess.run(
        [sys.executable, "-m", "appserver", "--version"], capture_output=True, text=True,
        timeout=30, check=True,
    ).stdout  # fmt: skip
    assert "(HTTP core: compiled (mypyc))" in version


def test_the_pure_variable_is_not_taken_for_a_setting() -> None:
    from appserver.config.sources import load

    assert load(environ={"APPSERVER_PURE_PYTHON": "1"}).unknown == []
