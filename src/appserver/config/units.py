"""Durations and sizes as people write them: ``30``, ``"500ms"``, ``"5m"``, ``"64KiB"``.

Numbers are seconds or bytes. Strings carry a unit. Both parsers raise ``ValueError`` with
a message that says what was expected, which pydantic turns into a field error.
"""

from __future__ import annotations

import re

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

DURATION_HINT = 'a number of seconds or a string like "500ms", "30s", "5m", "1h", "1m30s"'
# "1h30m", "1m30s", "2s500ms": parts from the largest unit down, each unit once.
_COMPOUND = re.compile(r"^\s*(?:(\d+)h)?\s*(?:(\d+)m(?!s))?\s*(?:(\d+)s)?\s*(?:(\d+)ms)?\s*$")
SIZE_HINT = 'a number of bytes or a string like "512", "64KiB", "10MiB", "1GB"'


def parse_duration(value: object) -> object:
    """Seconds as a float; other types pass through for pydantic to reject."""
    if isinstance(value, bool):
        raise ValueError(f"expected {DURATION_HINT}")
    if isinstance(value, str):
        match = _NUMBER_UNIT.match(value)
        unit = match.group(2).lower() if match else None
        if match is not None and (not unit or unit in _DURATION_UNITS):
            return float(match.group(1)) * _DURATION_UNITS[unit or "s"]
        compound = _COMPOUND.match(value.lower())
        if compound is None or not any(compound.groups()):
            raise ValueError(f"expected {DURATION_HINT}")
        hours, minutes, seconds, millis = (int(part or 0) for part in compound.groups())
        return hours * 3600.0 + minutes * 60.0 + seconds + millis / 1000
    return value


def parse_size(value: object) -> object:
    """Bytes as an int; other types pass through for pydantic to reject."""
    if isinstance(value, bool):
        raise ValueError(f"expected {SIZE_HINT}")
    if isinstance(value, str):
        match = _NUMBER_UNIT.match(value)
        unit = match.group(2).lower() if match else None
        if match is None or (unit and unit not in _SIZE_UNITS):
            raise ValueError(f"expected {SIZE_HINT}")
        size = float(match.group(1)) * _SIZE_UNITS[unit or "b"]
        if size != int(size):
            raise ValueError(f"expected a whole number of bytes, got {value!r}")
        return int(size)
    return value
