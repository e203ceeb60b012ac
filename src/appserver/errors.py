"""appserver's own exceptions: what went wrong, said so a person can act on it.

A leaf: this module imports nothing of appserver's, nor pydantic (the translation of pydantic's
errors into :class:`SettingError` lives in :mod:`appserver.config.problems`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


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
        return loc_path(self.loc) or "(config)"

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


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def loc_path(loc: tuple[str | int, ...]) -> str:
    """``("listeners", 0, "tls", "certfile")`` as ``listeners[0].tls.certfile``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        # A key TOML cannot write bare (``"x y"``, ``""``) is quoted, as in the file.
        key = part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
        path += f".{key}" if path else key
    return path


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


class AppLoadError(AppServerError):
    """The app could not be imported or is not an ASGI callable."""


class StartupError(AppServerError):
    """The server could not start: a socket could not be bound, lifespan startup failed."""


class ProtocolError(AppServerError):
    """The app broke the ASGI protocol (a message out of order, a bad header)."""


class ClientDisconnected(OSError):
    """``send()`` was called after the client went away (ASGI HTTP spec 2.4)."""
