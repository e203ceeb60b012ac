"""Read the TOML file: values by setting, with the line each came from, and every mistake.

tomllib parses but keeps no positions, so :func:`key_lines` scans the text for each key
within its table. It understands what people write in a config file (``[table]`` headers,
``key = value``, dotted keys, quoted keys) and gives up quietly (no line number) on anything
cleverer; a message without a line is still a message, a wrong line would mislead.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appserver.config.settings import BY_TOML, Setting, suggest, toml_tree
from appserver.errors import _MISSING, SettingError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_KEY = rf"(?:{_BARE}|{_QUOTED})(?:\s*\.\s*(?:{_BARE}|{_QUOTED}))*"
_TABLE_LINE = re.compile(rf"^\s*\[\s*({_KEY})\s*\]\s*(?:#.*)?$")
_ARRAY_TABLE_LINE = re.compile(rf"^\s*\[\[\s*({_KEY})\s*\]\]")
_KEY_LINE = re.compile(rf"^\s*({_KEY})\s*=")
_PART = re.compile(rf"{_BARE}|{_QUOTED}")
_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def _split_key(text: str) -> tuple[str, ...]:
    return tuple(part.strip("\"'") for part in _PART.findall(text))


def key_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """The 1-based line where each key path (and each table) is first written.

    The tables of an array (``[[listeners]]``) are told apart by index, as validation names
    them: ``("listeners", 1, "tls", "certfile")``; the array itself is where it first appears.
    """
    lines: dict[tuple[str | int, ...], int] = {}
    table: tuple[str | int, ...] = ()
    arrays: dict[tuple[str | int, ...], int] = {}  # array path -> index of its last table

    def indexed(path: tuple[str, ...]) -> tuple[str | int, ...]:
        # [listeners.tls] after [[listeners]] belongs to the last listener written.
        out: tuple[str | int, ...] = ()
        for part in path:
            out = (*out, part)
            if out in arrays:
                out = (*out, arrays[out])
        return out

    for number, line in enumerate(text.splitlines(), start=1):
        match = _ARRAY_TABLE_LINE.match(line)
        if match:
            parts = _split_key(match.group(1))
            array = (*indexed(parts[:-1]), parts[-1])
            lines.setdefault(array, number)
            arrays[array] = arrays.get(array, -1) + 1
            table = (*array, arrays[array])
            lines.setdefault(table, number)
            continue
        match = _TABLE_LINE.match(line)
        if match:
            table = indexed(_split_key(match.group(1)))
            lines.setdefault(table, number)
            continue
        match = _KEY_LINE.match(line)
        if match:
            path = table + _split_key(match.group(1))
            # A dotted key also defines its parent tables, here.
            for end in range(len(table) + 1, len(path) + 1):
                lines.setdefault(path[:end], number)
    return lines


@dataclass
class FileValues:
    """What one TOML file sets: values by setting name, where each is, and the mistakes."""

    path: str
    values: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int | None] = field(default_factory=dict)
    errors: list[SettingError] = field(default_factory=list)
    # Every key path's line, for errors inside a setting's value (listeners[1].tls.certfile).
    key_lines: dict[tuple[str | int, ...], int] = field(default_factory=dict)

    def where(self, name: str) -> str:
        line = self.lines.get(name)
        return f"{self.path}:{line}" if line else self.path

    def where_nested(self, path: tuple[str | int, ...]) -> str:
        """``file:line`` of a key path within a value, or of the nearest key that holds it."""
        line = _line_for(self.key_lines, path)
        return f"{self.path}:{line}" if line else self.path


def read_toml(path: str | os.PathLike[str]) -> FileValues:
    """Parse ``path`` into values by setting. Never raises for bad input: see ``.errors``."""
    shown = str(path)
    result = FileValues(shown)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        result.errors.append(
            SettingError((), _MISSING, f"cannot read the file: {reason}", shown, "")
        )
        return result
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _POSITION.search(message)
        where = shown
        if position:
            where = f"{shown}:{position.group(1)}:{position.group(2)}"
            message = message[: position.start()]
        result.errors.append(SettingError((), _MISSING, f"invalid TOML: {message}", where, ""))
        return result
    result.key_lines = key_lines(text)
    _collect(data, toml_tree(), (), result.key_lines, result)
    return result


def _collect(
    data: dict[str, Any],
    node: dict[str, Any],
    table: tuple[str, ...],
    lines: dict[tuple[str | int, ...], int],
    result: FileValues,
) -> None:
    for key, value in data.items():
        path = (*table, key)
        dotted = ".".join(path)
        line = _line_for(lines, path)
        where = f"{result.path}:{line}" if line else result.path
        expected = node.get(key)
        if isinstance(expected, Setting):
            result.values[expected.name] = value
            result.lines[expected.name] = line
        elif isinstance(expected, dict):
            if isinstance(value, dict):
                _collect(value, expected, path, lines, result)
            else:
                result.errors.append(
                    SettingError(path, value, f"expected a table [{dotted}]", where, dotted)
                )
        elif isinstance(value, dict) and not table:
            result.errors.append(
                SettingError(
                    path, _MISSING, "unknown table" + _hint_table(key, node), where, f"[{dotted}]"
                )
            )
        else:
            result.errors.append(
                SettingError(
                    path, _MISSING, "unknown setting" + _hint_key(path, node), where, dotted
                )
            )


def _line_for(lines: dict[tuple[str | int, ...], int], path: tuple[str | int, ...]) -> int | None:
    # An inline table ({...}) has no line per key: fall back to the nearest enclosing key.
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _hint_table(key: str, node: dict[str, Any]) -> str:
    tables = [name for name, sub in node.items() if isinstance(sub, dict)]
    match = suggest(key, tables)
    return f" (did you mean [{match}]?)" if match else ""


def _hint_key(path: tuple[str, ...], node: dict[str, Any]) -> str:
    *table, key = path
    match = suggest(key, list(node))
    if match is not None:
        return f" (did you mean {'.'.join((*table, match))}?)"
    # The right key in the wrong table: `port` at the top instead of under [server].
    for toml_path in BY_TOML:
        if toml_path.rsplit(".", 1)[-1] == key:
            return f" (did you mean {toml_path}?)"
    match = suggest(".".join(path), BY_TOML)
    return f" (did you mean {match}?)" if match else ""
