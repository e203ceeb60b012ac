"""appserver: a fast, hardened ASGI server configured declaratively."""

from __future__ import annotations

from typing import Any

from appserver.config.model import Config
from appserver.server import Server

__version__ = "0.1.0"
__all__ = ["Config", "Server", "__version__", "run"]


def run(app: Any, **kwargs: Any) -> None:
    """Serve ``app`` until stopped (blocking), like ``uvicorn.run``.

    Keywords are :class:`Config`'s. Ends normally after a signal-initiated graceful drain;
    raises SystemExit(1) when the server cannot start.
    """
    Server(Config(app=app, **kwargs)).run()
