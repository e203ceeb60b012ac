"""appserver's own exceptions: what went wrong, said so a person can act on it."""

from __future__ import annotations

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
    source: str | None = None  # "prod.toml:12", "APPSERVER_PORT", ...

    @property
    def key(self) -> str:
        return ".".join(str(part) for part in self.loc) or "(config)"

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        if self.value is _MISSING:
            return f"{where}{self.key}: {self.expected}"
        return f"{where}{self.key} = {self.value!r}: {self.expected}"


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

        errors = []
        for item in exc.errors():
            loc = tuple(item["loc"])
            value = item.get("input", _MISSING)
            if isinstance(value, dict) and not loc:
                value = _MISSING
            errors.append(SettingError(loc, value, expected_for(model, loc, item)))
        return cls(errors)


class AppLoadError(AppServerError):
    """The app could not be imported or is not an ASGI callable."""


class StartupError(AppServerError):
    """The server could not start: a socket could not be bound, lifespan startup failed."""


class ProtocolError(AppServerError):
    """The app broke the ASGI protocol (a message out of order, a bad header)."""


class ClientDisconnected(OSError):
    """``send()`` was called after the client went away (ASGI HTTP spec 2.4)."""
