"""appserver's own exceptions: what went wrong, said so a person can act on it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError


@dataclass(frozen=True)
class SettingError:
    """One invalid setting: where it is, what was given, what was expected."""

    loc: tuple[str | int, ...]
    value: Any
    expected: str
    source: str | None = None  # "prod.toml:12", ".env:3", ...
    # How the person spelled the setting where they set it: "limits.concurrency" in a file,
    # "APPSERVER_PORT" in the environment, "--port" on the command line. None: the Python keyword.
    spelled: str | None = None

    @property
    def key(self) -> str:
        if self.spelled is not None:
            return self.spelled
        return ".".join(str(part) for part in self.loc) or "(config)"

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        if self.value is _MISSING and self.spelled == "":
            return f"{where}{self.expected}"  # about a whole file, not one setting
        if self.value is _MISSING:
            return f"{where}{self.key}: {self.expected}"
        if self.spelled is None:
            return f"{where}{self.key} = {self.value!r}: {self.expected}"
        # Written the way it was typed: NAME="value" for variables and flags, key = "value" in TOML.
        shown = _literal(self.value)
        if self.spelled.startswith(("APPSERVER_", "-")):
            return f"{where}{self.key}={shown}: {self.expected}"
        return f"{where}{self.key} = {shown}: {self.expected}"


def _literal(value: Any) -> str:
    """A value as TOML or JSON would write it (``"many"``, ``true``), for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, float, list, dict)):
        try:
            return json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            pass
    return repr(value)


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


class AppServerError(Exception):
    """Base of appserver's exceptions."""


class ConfigError(AppServerError, ValueError):
    """The configuration is invalid. ``errors`` holds every problem found, not only the first."""

    def __init__(self, errors: list[SettingError]) -> None:
        self.errors = errors
        lines = [str(error) for error in errors]
        super().__init__(
            lines[0] if len(lines) == 1 else "\n".join(["invalid configuration:", *lines])
        )

    @classmethod
    def from_validation_error(cls, exc: ValidationError, model: type[BaseModel]) -> ConfigError:
        from appserver.config.describe import expected_for

        errors: list[SettingError] = []
        seen: set[tuple[str | int, ...]] = set()
        for item in exc.errors():
            loc = tuple(item["loc"])
            value = item.get("input", _MISSING)
            if isinstance(value, dict) and not loc:
                value = _MISSING
            if len(loc) > 1 and _is_union_branch(model, loc):
                # pydantic reports each member of a union ("log_config.str", "log_config.dict");
                # a person wants one line saying what the setting accepts.
                loc = loc[:1]
                item = {**item, "type": "union"}
            if loc in seen:
                continue
            seen.add(loc)
            errors.append(SettingError(loc, value, expected_for(model, loc, item)))
        return cls(errors)


def _is_union_branch(model: type[BaseModel], loc: tuple[Any, ...]) -> bool:
    import types
    import typing

    info = model.model_fields.get(str(loc[0]))
    if info is None or not isinstance(loc[1], str):
        return False
    return typing.get_origin(info.annotation) in (typing.Union, types.UnionType)


class AppLoadError(AppServerError):
    """The app could not be imported or is not an ASGI callable."""


class StartupError(AppServerError):
    """The server could not start: a socket could not be bound, lifespan startup failed."""


class ProtocolError(AppServerError):
    """The app broke the ASGI protocol (a message out of order, a bad header)."""


class ClientDisconnected(OSError):
    """``send()`` was called after the client went away (ASGI HTTP spec 2.4)."""
