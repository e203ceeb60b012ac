"""pydantic's validation errors translated into our :class:`~appserver.errors.SettingError`.

The boundary where a third-party error becomes ours (httpcore's ``map_exceptions`` is the
model): one line per setting, worded from the setting's definition, not pydantic's codes.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from appserver.config.describe import expected_for
from appserver.errors import _MISSING, ConfigError, SettingError


def config_error(exc: ValidationError, model: type[BaseModel]) -> ConfigError:
    """A ConfigError with one SettingError per invalid setting of ``model``."""
    errors: list[SettingError] = []
    seen: set[tuple[str | int, ...]] = set()
    for item in exc.errors():
        loc = tuple(item["loc"])
        value = item.get("input", _MISSING)
        if (isinstance(value, dict) and not loc) or item.get("type") == "missing":
            value = _MISSING  # the input is the table the key is missing from
        if len(loc) > 1 and _is_union_branch(model, loc):
            # pydantic reports each member of a union ("log_config.str", "log_config.dict");
            # a person wants one line saying what the setting accepts.
            loc = loc[:1]
            item = {**item, "type": "union"}
        if item.get("type") == "entries":
            # A validator that checks a table's entries one by one names each bad entry, so
            # each gets its own line at its own key (headers.custom."x y" on line 12).
            for key, entry_value, why in item.get("ctx", {}).get("entries", ()):
                errors.append(SettingError((*loc, key), entry_value, why))
            continue
        if loc in seen:
            continue
        seen.add(loc)
        errors.append(SettingError(loc, value, expected_for(model, loc, item)))
    return ConfigError(errors)


def _is_union_branch(model: type[BaseModel], loc: tuple[Any, ...]) -> bool:
    info = model.model_fields.get(str(loc[0]))
    if info is None or not isinstance(loc[1], str):
        return False
    return typing.get_origin(info.annotation) in (typing.Union, types.UnionType)
