"""Every setting, read from the one definition in :mod:`appserver.config.model`.

:class:`Setting` is a view of one field of :class:`~appserver.config.model.Config`: its Python
keyword, TOML path, environment variable, command-line flag, type, default and documentation.
The TOML reader, the environment reader, the CLI, the JSON Schema and the README reference all
iterate :data:`SETTINGS`; none of them keeps a list of its own.
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass
from typing import Any

from pydantic.fields import FieldInfo

from appserver.config.describe import _annotated, describe_field
from appserver.config.model import Config

ENV_PREFIX = "APPSERVER_"


@dataclass(frozen=True)
class Setting:
    """One setting as every reader sees it."""

    name: str  # the Python keyword: Config(limit_concurrency=...)
    toml: str  # "limits.concurrency"
    cli: str | None  # "--limit-concurrency"
    doc: str
    info: FieldInfo

    @property
    def env(self) -> str:
        extra = self.info.json_schema_extra
        if isinstance(extra, dict) and isinstance(extra.get("env"), str):
            return str(extra["env"])  # APPSERVER_BIND, as gunicorn's and hypercorn's --bind
        return ENV_PREFIX + self.name.upper()

    @property
    def default(self) -> Any:
        return self.info.default

    @property
    def annotation(self) -> Any:
        """The annotation with unit validators (Duration, Size) put back."""
        return _annotated(self.info)

    @property
    def expected(self) -> str:
        """What the setting accepts, in words: "an integer 0..65535"."""
        return describe_field(self.info)

    @property
    def is_bool(self) -> bool:
        return self.info.annotation is bool

    @property
    def optional(self) -> bool:
        return type(None) in typing.get_args(self.info.annotation)

    def _kinds(self) -> set[Any]:
        args = typing.get_args(self.info.annotation) or (self.info.annotation,)
        if typing.get_origin(self.info.annotation) in (list, dict):
            args = (self.info.annotation,)
        return {typing.get_origin(arg) or arg for arg in args}

    @property
    def accepts_json(self) -> bool:
        """A list or a table: text from the environment or a flag may be JSON."""
        return bool(self._kinds() & {list, dict})

    @property
    def is_list(self) -> bool:
        """A list that takes no plain string: text is split on commas."""
        kinds = self._kinds()
        return list in kinds and str not in kinds


def _settings() -> tuple[Setting, ...]:
    found = []
    for name, info in Config.model_fields.items():
        extra = info.json_schema_extra
        assert isinstance(extra, dict), f"{name} is not declared with setting()"
        toml = extra.get("toml")
        if toml is None:
            continue  # Python only (a callable): no file, environment or flag can carry it
        cli = extra.get("cli")
        found.append(
            Setting(
                name=name,
                toml=str(toml),
                cli=str(cli) if cli is not None else None,
                doc=info.description or "",
                info=info,
            )
        )
    return tuple(found)


SETTINGS: tuple[Setting, ...] = _settings()
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
BY_TOML: dict[str, Setting] = {s.toml: s for s in SETTINGS}
BY_ENV: dict[str, Setting] = {s.env: s for s in SETTINGS}


def toml_tree() -> dict[str, Any]:
    """The TOML schema as nested dicts: tables are dicts, settings are leaves."""
    tree: dict[str, Any] = {}
    for setting in SETTINGS:
        *tables, key = setting.toml.split(".")
        node = tree
        for table in tables:
            node = node.setdefault(table, {})
        node[key] = setting
    return tree


def suggest(word: str, candidates: typing.Iterable[str]) -> str | None:
    """The closest candidate to a mistyped ``word``, or None when nothing is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: str, candidates: typing.Iterable[str]) -> str:
    match = suggest(word, candidates)
    return f" (did you mean {match}?)" if match else ""
