"""A validated configuration as plain data: what a serving process holds.

pydantic, with the validators and schemas it builds, is about a quarter of an idle server's
memory (10.5 of ~40 MiB here, 3.6 MiB of it the pages of pydantic-core's shared library, which no
Python code can unload). The server needs none of it once a configuration is valid: it only reads
attributes. :class:`SettledConfig` copies a validated :class:`~appserver.config.model.Config`
into plain objects — every field, and every property derived from the fields, read once — that
pickle without pydantic, so ``appserver serve`` can hand them to a fresh interpreter
(:mod:`appserver.serving`) that never imports pydantic or typer.

A SettledConfig stands in for a Config wherever the runtime reads one; to the type checker it is
one. What it cannot do is validate: assigning to it checks nothing, and rereading the sources
(SIGHUP) builds a real Config again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from appserver.config.loadable import Loadable

if TYPE_CHECKING:
    from pydantic import BaseModel

    from appserver.config.listeners import ListenerConfig
    from appserver.config.model import Config

    _StandsIn = Config
else:
    _StandsIn = Loadable


def _read(model: BaseModel) -> dict[str, Any]:
    """The model's fields (nested models settled too) and every property its own class defines,
    read now: those depend on the fields only (what depends on load() lives in Loadable, which
    SettledConfig keeps live)."""
    values = {name: _settle(getattr(model, name)) for name in type(model).model_fields}
    for name, attribute in vars(type(model)).items():
        if isinstance(attribute, property):
            values[name] = getattr(model, name)
    return values


def _settle(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return type(value)(_settle(item) for item in value)
    if hasattr(type(value), "model_fields"):
        return Settled(value)
    return value


class Settled:
    """A nested model (a listener, its TLS table) as plain attributes: its fields and its
    properties, read once. Equal to the model it was read from (SIGHUP compares)."""

    def __init__(self, model: BaseModel) -> None:
        self._fields = tuple(type(model).model_fields)
        self.__dict__.update(_read(model))

    def __eq__(self, other: object) -> bool:
        if not hasattr(type(other), "model_fields") and not isinstance(other, Settled):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name, None) for name in self._fields)

    def __hash__(self) -> int:
        return hash(tuple(repr(getattr(self, name)) for name in self._fields))

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"Settled({values})"


class SettledConfig(_StandsIn):
    """A :class:`~appserver.config.model.Config`'s fields, properties and listeners as plain
    attributes, with :meth:`load` live (see the module docstring)."""

    def __init__(self, config: Config) -> None:  # a Config subclass only to the type checker
        # model_fields_set too: runtime.logs reads which settings were given.
        self.__dict__.update(_read(config), model_fields_set=set(config.model_fields_set))
        self._listeners: list[ListenerConfig] = _settle(config.listener_configs())
        self._loaded = None
        self._sockets_inherited = config._sockets_inherited
        self._metrics_dir = config._metrics_dir

    def listener_configs(self) -> list[ListenerConfig]:
        return list(self._listeners)

    def __repr__(self) -> str:
        return f"SettledConfig(app={self.app!r})"
