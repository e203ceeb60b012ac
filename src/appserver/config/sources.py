"""Layering: defaults < TOML file < .env file < APPSERVER_* environment < command-line flags.

Each source becomes a :class:`Layer`: the values it sets (by Python keyword), where each came
from, and the mistakes found while reading it. :func:`resolve` is the one function that stacks
layers: it validates every layer on its own (so a bad value in the file is reported even when
a flag overrides it, and every error is reported at once), then validates the merged result
for the rules that span layers. The environment is always passed in as a mapping; nothing here
reads ``os.environ`` (the CLI passes it), so tests need no monkeypatching.

Text from the environment, a .env file or a flag is decoded per setting: lists take
comma-separated items or JSON, ``""``/``"none"`` unsets an optional setting, and everything
else is left to pydantic's lax parsing (``"8000"``, ``"yes"``, ``"30s"``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from appserver.config.model import FLAT_SOCKET_SETTINGS, Config
from appserver.config.settings import (
    BY_ENV,
    BY_NAME,
    BY_TOML,
    ENV_PREFIX,
    SETTINGS,
    Setting,
    did_you_mean,
)
from appserver.config.toml_file import FileValues, read_toml
from appserver.errors import _MISSING, ConfigError, SettingError, loc_path

Kind = Literal["default", "file", "dotenv", "environ", "flag", "override"]


@dataclass(frozen=True)
class Origin:
    """Where one value came from, for messages and ``appserver check --print``."""

    kind: Kind
    spelled: str | None = None  # "limits.concurrency", "APPSERVER_PORT", "--port"
    where: str | None = None  # "prod.toml:12", ".env:3"

    def __str__(self) -> str:
        if self.kind == "default":
            return "default"
        if self.kind == "file":
            return self.where or "file"
        if self.kind == "dotenv":
            return f"{self.where} {self.spelled}"
        if self.kind == "environ":
            return f"environment {self.spelled}"
        if self.kind == "flag":
            return f"flag {self.spelled}"
        return f"override {self.spelled}"


DEFAULT = Origin("default")


@dataclass
class Layer:
    """What one source sets, where each value came from, and what was wrong with it."""

    kind: Kind
    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, Origin] = field(default_factory=dict)
    errors: list[SettingError] = field(default_factory=list)
    # APPSERVER_* variables that name no setting: a warning to serve, an error to check.
    unknown: list[SettingError] = field(default_factory=list)
    file: FileValues | None = None  # the file read, for the lines of keys inside a value
    written: dict[str, str] = field(default_factory=dict)  # variables' text before decoding

    def set(self, name: str, value: Any, origin: Origin) -> None:
        self.values[name] = value
        self.origins[name] = origin

    def error_for(
        self, name: str, value: Any, expected: str, loc: tuple[str | int, ...] = ()
    ) -> SettingError:
        """An error about setting ``name``; ``loc`` (from validation) may point inside its
        value: ``("listeners", 1, "tls", "certfile")``."""
        origin = self.origins.get(name, Origin(self.kind))
        inner = loc[1:] if loc[:1] == (name,) else ()
        shown = origin.spelled if origin.kind != "file" else BY_NAME[name].toml
        where = origin.where if origin.kind in ("file", "dotenv") else None
        if inner:
            path = (*BY_NAME[name].toml.split("."), *inner)
            if origin.kind == "file":
                shown = loc_path(path)
                if self.file is not None:
                    where = self.file.where_nested(path)
            else:
                # APPSERVER_BIND, --bind: the whole value as typed, then the entry inside it.
                expected = f"{loc_path(path)}: {expected}"
                value = self.written.get(name, self.values.get(name, value))
        return SettingError(loc or (name,), value, expected, where, shown)


@dataclass
class Resolved:
    """The outcome of layering: a Config (None when invalid), every value's origin, problems."""

    config: Config | None
    origins: dict[str, Origin]
    errors: list[SettingError]
    unknown: list[SettingError]

    def origin(self, name: str) -> Origin:
        return self.origins.get(name, DEFAULT)

    def unwrap(self, *, strict_environ: bool = False) -> Config:
        """The Config, or a ConfigError with every problem (unknown variables too if strict)."""
        errors = self.errors + (self.unknown if strict_environ else [])
        if errors or self.config is None:
            raise ConfigError(errors)
        return self.config


# --- reading each source -------------------------------------------------------------------------
def file_layer(path: str | os.PathLike[str]) -> Layer:
    """The TOML file's values, with ``file:line`` origins."""
    read = read_toml(path)
    layer = Layer("file", errors=list(read.errors), file=read)
    for name, value in read.values.items():
        layer.set(name, value, Origin("file", BY_NAME[name].toml, read.where(name)))
    return layer


_DOTENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=")


def dotenv_layer(path: str | os.PathLike[str]) -> Layer:
    """``APPSERVER_*`` entries of a .env file (python-dotenv syntax); other names are the app's."""
    from dotenv import dotenv_values

    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        layer = Layer("dotenv")
        layer.errors.append(
            SettingError((), _MISSING, f"cannot read the file: {reason}", shown, "")
        )
        return layer
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = _DOTENV_LINE.match(line)
        if match:
            lines[match.group(1)] = number  # the last assignment wins, as in dotenv
    # No interpolation: ${VAR} would read os.environ behind the caller's back.
    values = dotenv_values(path, interpolate=False)
    where = {name: f"{shown}:{lines[name]}" if name in lines else shown for name in values}
    return environ_layer(
        {k: v if v is not None else "" for k, v in values.items()}, kind="dotenv", where=where
    )


# APPSERVER_* variables that are not settings: read before any configuration exists.
NOT_SETTINGS = frozenset({"APPSERVER_PURE_PYTHON"})


def environ_layer(
    environ: Mapping[str, str],
    *,
    kind: Kind = "environ",
    where: Mapping[str, str] | None = None,
) -> Layer:
    """Values of the ``APPSERVER_*`` variables in ``environ``; other variables are ignored."""
    layer = Layer(kind)
    for variable, text in sorted(environ.items()):
        if not variable.startswith(ENV_PREFIX) or variable in NOT_SETTINGS:
            continue
        place = where.get(variable) if where else None
        setting = BY_ENV.get(variable)
        if setting is None:
            hint = did_you_mean(variable, BY_ENV)
            layer.unknown.append(
                SettingError((variable,), text, "unknown variable" + hint, place, variable)
            )
            continue
        origin = Origin(kind, variable, place)
        _set_text(layer, setting, text, origin)
    if kind == "environ":
        # uvicorn's own conventions, read when the APPSERVER_ variable is not set: Heroku's
        # and gunicorn's WEB_CONCURRENCY for workers, and FORWARDED_ALLOW_IPS.
        for variable, name in UVICORN_VARIABLES.items():
            if variable in environ and name not in layer.values and name not in layer.origins:
                _set_text(layer, BY_NAME[name], environ[variable], Origin(kind, variable))
    return layer


UVICORN_VARIABLES = {"WEB_CONCURRENCY": "workers", "FORWARDED_ALLOW_IPS": "forwarded_allow_ips"}


def overrides_layer(overrides: Mapping[str, Any], *, kind: Kind = "override") -> Layer:
    """Values keyed by Python keyword (``limit_concurrency``) or TOML path (``limits.concurrency``).

    Strings are decoded like environment text, so ``{"limits.concurrency": "10"}`` works the
    same from a flag as ``APPSERVER_LIMIT_CONCURRENCY=10`` does.
    """
    layer = Layer(kind)
    for key, value in overrides.items():
        setting = BY_NAME.get(key) or BY_TOML.get(key)
        spelled = key if kind != "flag" or key.startswith("-") else f"--set {key}"
        if setting is None:
            hint = did_you_mean(key, [*BY_TOML, *BY_NAME])
            layer.errors.append(
                SettingError((key,), value, "unknown setting" + hint, None, spelled)
            )
            continue
        origin = Origin(kind, spelled)
        if isinstance(value, str):
            _set_text(layer, setting, value, origin)
        else:
            layer.set(setting.name, value, origin)
    return layer


def decode_text(setting: Setting, text: str) -> Any:
    """Turn the text of a variable or flag into the value for ``setting``.

    Raises ValueError (worded "expected ...") when the text cannot be decoded.
    """
    stripped = text.strip()
    if setting.optional and stripped.lower() in ("", "none") and setting.name != "log_config":
        return None
    if setting.accepts_json and stripped[:1] in ("[", "{"):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ValueError(f"expected valid JSON ({exc.msg} at column {exc.colno})") from None
    if setting.name == "headers":
        # "cache-control: no-cache, no-store, x-a: 1": a comma starts a new header only where
        # a new "name:" follows, so values keep their commas.
        return [item.strip() for item in _NEXT_HEADER.split(stripped) if item.strip()]
    if setting.is_list:
        return [item.strip() for item in stripped.split(",") if item.strip()]
    return text


_NEXT_HEADER = re.compile(r",\s*(?=[!#$%&'*+\-.^_`|~0-9A-Za-z]+\s*:)")


def _set_text(layer: Layer, setting: Setting, text: str, origin: Origin) -> None:
    layer.origins[setting.name] = origin
    layer.written[setting.name] = text
    try:
        layer.values[setting.name] = decode_text(setting, text)
    except ValueError as exc:
        layer.errors.append(layer.error_for(setting.name, text, str(exc)))


# --- stacking ------------------------------------------------------------------------------------
# Settings that choose the listening socket: a source that sets two of them is ambiguous.
# (A higher layer setting uds over a file's host/port is an override, not a conflict.)
_EXCLUSIVE: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("uds", ("host", "port"), "a Unix socket and a TCP host/port are exclusive"),
    ("fd", ("uds",), "an inherited fd and a Unix socket are exclusive"),
    (
        "listeners",
        tuple(sorted(FLAT_SOCKET_SETTINGS)),
        "listeners and the flat socket settings are exclusive (write the address as a bind "
        "and TLS as [listeners.tls])",
    ),
)


def resolve(layers: list[Layer]) -> Resolved:
    """Stack ``layers`` (lowest precedence first) into one validated Config.

    Every problem is collected: each layer's reading errors, each layer's invalid values
    (validated alone, so each is attributed to the source that set it), same-source conflicts,
    and finally the merged Config's own cross-field rules.
    """
    errors: list[SettingError] = []
    unknown: list[SettingError] = []
    merged: dict[str, Any] = {}
    origins: dict[str, Origin] = {}
    for layer in layers:
        errors.extend(layer.errors)
        unknown.extend(layer.unknown)
        errors.extend(_validate_alone(layer))
        errors.extend(_conflicts(layer))
        if layer.values.get("listeners") is not None:
            # A list of listeners replaces the one socket a lower source described with the
            # flat keywords (the file's host/port under APPSERVER_BIND); the other way round
            # is refused by Config, naming both.
            for name in FLAT_SOCKET_SETTINGS:
                merged.pop(name, None)
                origins.pop(name, None)
        merged.update(layer.values)
        origins.update(layer.origins)
    if errors:
        return Resolved(None, origins, errors, unknown)
    try:
        config = Config(**merged)
    except ConfigError as exc:
        return Resolved(None, origins, [_attribute(e, origins) for e in exc.errors], unknown)
    return Resolved(config, origins, [], unknown)


def _validate_alone(layer: Layer) -> list[SettingError]:
    failed = {e.loc[0] for e in layer.errors if e.loc}
    values = {k: v for k, v in layer.values.items() if k not in failed}
    try:
        Config(**values)
    except ConfigError as exc:
        found = [
            # The value as it was written ("0s"), not as parsed (0.0), for a whole setting.
            layer.error_for(
                str(e.loc[0]),
                layer.values.get(str(e.loc[0]), e.value) if len(e.loc) == 1 else e.value,
                e.expected,
                e.loc,
            )
            for e in exc.errors
            if e.loc  # cross-field rules are checked on the merged config
        ]
        return sorted(found, key=_line_of)
    return []


def _line_of(error: SettingError) -> int:
    """The line in its file (for sorting one source's problems top to bottom)."""
    _, _, line = (error.source or "").rpartition(":")
    return int(line) if line.isdigit() else 0


def _conflicts(layer: Layer) -> list[SettingError]:
    found = []
    for name, others, reason in _EXCLUSIVE:
        if name not in layer.values or layer.values[name] is None:
            continue
        clashing = [o for o in others if o in layer.origins and layer.values[o] is not None]
        if not clashing:
            continue
        also = ", ".join(_describe_origin(o, layer.origins[o]) for o in clashing)
        found.append(
            layer.error_for(
                name, layer.values[name], f"{reason}: also set {also}; remove one of them"
            )
        )
    return found


def _describe_origin(name: str, origin: Origin) -> str:
    if origin.kind == "file":
        return f"{BY_NAME[name].toml} ({origin.where})"
    return str(origin.spelled)


def _attribute(error: SettingError, origins: Mapping[str, Origin]) -> SettingError:
    """Name the source of a merged-config error; rules over several fields name them all."""
    if error.loc and str(error.loc[0]) in BY_NAME:
        name = str(error.loc[0])
        origin = origins.get(name, DEFAULT)
        shown = BY_NAME[name].toml if origin.kind in ("file", "default") else origin.spelled
        where = origin.where if origin.kind in ("file", "dotenv") else None
        return SettingError(error.loc, error.value, error.expected, where, shown)
    socket_settings = {name for name, others, _ in _EXCLUSIVE} | {
        o for _, others, _ in _EXCLUSIVE for o in others
    }
    involved = [
        _describe_origin(s.name, origins[s.name])
        for s in SETTINGS
        if s.name in origins and s.name in socket_settings and origins[s.name].kind != "default"
    ]
    detail = f" (set by {', '.join(involved)})" if involved else ""
    return SettingError(error.loc, _MISSING, error.expected + detail, None, "")


# --- the whole stack -------------------------------------------------------------------------------
def layers_for(
    path: str | os.PathLike[str] | None = None,
    *,
    env_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    overrides_kind: Kind = "override",
) -> list[Layer]:
    """The layers, lowest precedence first, for the sources given (defaults are implicit)."""
    layers = []
    if path is not None:
        layers.append(file_layer(path))
    if env_file is not None:
        layers.append(dotenv_layer(env_file))
    if environ is not None:
        layers.append(environ_layer(environ))
    if overrides:
        layers.append(overrides_layer(overrides, kind=overrides_kind))
    return layers


def load(
    path: str | os.PathLike[str] | None = None,
    *,
    env_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Resolved:
    """Layer defaults < ``path`` (TOML) < ``env_file`` < ``environ`` < ``overrides``."""
    return resolve(layers_for(path, env_file=env_file, environ=environ, overrides=overrides))
