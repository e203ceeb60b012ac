"""Builds the compiled accelerator (mypyc) when it can; everything else is in pyproject.toml.

The modules of appserver._accel.COMPILED are compiled from the same mypy-strict sources. Every
extension is optional: when mypyc or a C compiler is missing or the build fails, setuptools
says so and the package installs as pure Python (``appserver --version`` tells which).
Set APPSERVER_PURE_PYTHON=1 to skip the build.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

# The list lives in the package (read as text: the package is not importable while building).
_ACCEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src", "appserver", "_accel.py")


def _compiled_modules() -> list[str]:
    text = open(_ACCEL, encoding="utf-8").read()
    block = text.split("COMPILED: tuple[str, ...] = (", 1)[1].split(")", 1)[0]
    names = [line.strip().strip('",') for line in block.splitlines() if line.strip()]
    return [os.path.join("src", *name.split(".")) + ".py" for name in names]


def _extensions() -> list[object]:
    if os.environ.get("APPSERVER_PURE_PYTHON", "").strip().lower() in ("1", "true", "yes", "on"):
        return []
    try:
        from mypyc.build import mypycify

        # No config file: pyproject's [tool.mypy] names the pydantic plugin, which the build
        # environment lacks; these modules import no pydantic at run time.
        extensions = mypycify(
            ["--config-file=", "--follow-imports=silent", "--ignore-missing-imports",
             *_compiled_modules()],
            opt_level="3",
            debug_level="0",
        )
    except BaseException as exc:  # mypy missing, a type error (it exits): the pure modules
        if isinstance(exc, KeyboardInterrupt):
            raise
        print(f"warning: appserver's compiled accelerator is not built: {exc}", file=sys.stderr)
        return []
    for extension in extensions:
        extension.optional = True  # a failed C build leaves the pure module in place
    return list(extensions)


setup(ext_modules=_extensions())
