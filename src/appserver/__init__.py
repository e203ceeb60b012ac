"""appserver: a fast, hardened ASGI server configured declaratively.

The package exposes its API lazily (PEP 562): ``import appserver.config`` or
``import appserver.http`` loads neither the server nor asyncio; ``appserver.Server`` imports
the server on first use.
"""

# No `from __future__ import annotations` and no plain imports: every module-level name here is
# part of the API, so `dir(appserver)` and tab completion show only the API.
import typing as _typing

# Before anything imports appserver.http: which HTTP core loads, compiled or pure (_accel.py).
from appserver import _accel as _accel

if _typing.TYPE_CHECKING:
    from appserver.config.model import Config
    from appserver.server import Server

    __version__: str

__all__ = ["Config", "Server", "__version__", "run"]


def __getattr__(name: str) -> _typing.Any:
    if name == "__version__":
        # Read when asked: importlib.metadata (with email, zipfile, csv) is 3 MiB of an idle
        # serving process that never asks.
        import importlib.metadata

        try:
            return importlib.metadata.version("appserver")  # defined once: pyproject.toml
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a source tree
            return "0.0.0+unknown"
    if name == "Config":
        from appserver.config.model import Config

        return Config
    if name == "Server":
        from appserver.server import Server

        return Server
    raise AttributeError(f"module 'appserver' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


def run(app: _typing.Any, **kwargs: _typing.Any) -> None:
    """Serve ``app`` until stopped (blocking), like ``uvicorn.run``.

    Keywords are :class:`Config`'s. Ends normally after a signal-initiated graceful drain;
    raises SystemExit(3) when the server cannot start. With ``workers``, a supervisor runs
    that many worker processes (the app must then be an import string, as in uvicorn, or a
    callable the workers inherit through fork).
    """
    from appserver.config.model import Config

    config = Config(app=app, **kwargs)
    if config.workers is not None or config.reload:
        from appserver.supervisor import run_supervised

        run_supervised(config)
        return
    from appserver.server import Server

    Server(config).run()
