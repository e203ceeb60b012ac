"""The JSON Schema of the TOML file, nested by table, built from the settings' one definition.

Written by hand rather than from ``Config.model_json_schema()``: the file's shape (tables) is
not the model's (flat keywords), and the file accepts more than the model's types say
(durations as "30s", sizes as "64KiB", headers as a table).
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

from appserver.config.describe import _bounds
from appserver.config.settings import SETTINGS, Setting, toml_tree
from appserver.config.units import parse_duration, parse_size

_UNIT = r"^\s*\d+(\.\d+)?\s*[a-zA-Z]*\s*$"


def _type_schema(annotation: Any) -> dict[str, Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [_type_schema(a) for a in typing.get_args(annotation) if a is not type(None)]
        return options[0] if len(options) == 1 else {"anyOf": options}
    if origin is typing.Annotated:
        inner, *meta = typing.get_args(annotation)
        funcs = {getattr(m, "func", None) for m in meta}
        if parse_duration in funcs or parse_size in funcs:
            base = _type_schema(inner)
            return {"anyOf": [base, {"type": "string", "pattern": _UNIT}]}
        return _type_schema(inner)
    if origin is Literal:
        return {"enum": list(typing.get_args(annotation))}
    if annotation is bool:
        return {"type": "boolean"}
    if annotation is int:
        return {"type": "integer"}
    if annotation is float:
        return {"type": "number"}
    if annotation is str:
        return {"type": "string"}
    if origin is list:
        return {"type": "array"}
    if origin is dict:
        return {"type": "object"}
    return {"type": "string"}  # `app`: TOML can only name it with an import string


def setting_schema(setting: Setting) -> dict[str, Any]:
    """One setting's schema: type, bounds, default and description."""
    if setting.name == "headers":
        # The file writes headers as a table {name = "value"}; a list of "name: value" also works.
        schema: dict[str, Any] = {
            "anyOf": [
                {"type": "object", "additionalProperties": {"type": "string"}},
                {"type": "array", "items": {"type": "string"}},
            ]
        }
    else:
        schema = _type_schema(setting.annotation)
        if setting.is_list:
            schema = {"type": "array", "items": {"type": "string"}}
    ge, gt, le, lt = _bounds(setting.info)
    bounds = {"minimum": ge, "exclusiveMinimum": gt, "maximum": le, "exclusiveMaximum": lt}
    numeric = {k: v for k, v in bounds.items() if v is not None}
    if numeric:
        if "anyOf" in schema:
            schema["anyOf"][0].update(numeric)
        else:
            schema.update(numeric)
    schema["description"] = setting.doc
    default = setting.default
    if default is not None and not callable(default):
        schema["default"] = (
            [list(d) if isinstance(d, tuple) else d for d in default]
            if isinstance(default, list)
            else default
        )
    return schema


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an appserver TOML file."""

    def table(node: dict[str, Any]) -> dict[str, Any]:
        properties = {
            key: table(value) if isinstance(value, dict) else setting_schema(value)
            for key, value in node.items()
        }
        return {"type": "object", "properties": properties, "additionalProperties": False}

    schema = table(toml_tree())
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "appserver configuration",
        **schema,
    }


__all__ = ["SETTINGS", "json_schema", "setting_schema"]
