"""What :meth:`Config.load` builds, and the attributes that read it.

A mixin without pydantic, shared by :class:`~appserver.config.model.Config` and
:class:`~appserver.config.settled.SettledConfig` (the plain copy a serving process holds), so
the one upward call of the config layer into the runtime is written once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, cast

if TYPE_CHECKING:
    from appserver.config.model import Config
    from appserver.runtime.loader import Loaded


class Loadable:
    """``load()`` and what it built: the app, the protocol classes, the ASGI version."""

    if TYPE_CHECKING:  # declared by the classes that mix this in
        _loaded: Loaded | None
        interface: str

    def load(self) -> None:
        """Import the app and resolve the protocol, loop and lifespan implementations.

        Safe to call twice: the second call does nothing. Raises :class:`~appserver.errors.AppLoadError`
        naming the import string when the app cannot be imported.
        """
        if self._loaded is None:
            from appserver.runtime.loader import load

            # Mixed into Config, or into SettledConfig, which stands in for one.
            self._loaded = load(cast("Config", self))

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def _require_loaded(self) -> Loaded:
        if self._loaded is None:
            raise AttributeError(
                "config.load() has not been called: call it before Server.startup() "
                "(Server.run() and Server.serve() call it for you)"
            )
        return self._loaded

    @property
    def asgi_version(self) -> Literal["2.0", "3.0"]:
        """uvicorn's attribute: the ASGI version the app is called with."""
        if self.interface == "asgi2":
            return "2.0"
        if self.interface == "auto" and self._loaded is not None:
            return "2.0" if self._loaded.asgi2 else "3.0"
        return "3.0"

    @property
    def loaded_app(self) -> Any:
        return self._require_loaded().app

    @property
    def lifespan_class(self) -> Any:
        return self._require_loaded().lifespan_class

    @property
    def http_protocol_class(self) -> Any:
        return self._require_loaded().http_protocol_class

    @property
    def ws_protocol_class(self) -> Any:
        return self._require_loaded().ws_protocol_class
