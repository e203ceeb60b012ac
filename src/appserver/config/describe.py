"""Say what a setting expects, in words, from its one definition.

Error messages read ``port = '80a': expected an integer 0..65535`` instead of pydantic's
error codes: the words come from the field's type and bounds, so they cannot drift from the
definition.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Literal, Union

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from appserver.config.units import DURATION_HINT, SIZE_HINT, parse_duration, parse_size


def _bounds(info: FieldInfo) -> tuple[Any, Any, Any, Any]:
    ge = gt = le = lt = None
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            ge = item.ge
        elif isinstance(item, annotated_types.Gt):
            gt = item.gt
        elif isinstance(item, annotated_types.Le):
            le = item.le
        elif isinstance(item, annotated_types.Lt):
            lt = item.lt
    return ge, gt, le, lt


def _fmt(number: Any) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _range(info: FieldInfo) -> str:
    ge, gt, le, lt = _bounds(info)
    if ge is not None and le is not None:
        return f" {_fmt(ge)}..{_fmt(le)}"
    parts = []
    if ge is not None:
        parts.append(f">= {_fmt(ge)}")
    if gt is not None:
        parts.append(f"> {_fmt(gt)}")
    if le is not None:
        parts.append(f"<= {_fmt(le)}")
    if lt is not None:
        parts.append(f"< {_fmt(lt)}")
    return (" " + " and ".join(parts)) if parts else ""


def _validators(annotation: Any) -> list[Any]:
    found = []
    for meta in getattr(annotation, "__metadata__", ()):
        func = getattr(meta, "func", None)
        if func is not None:
            found.append(func)
    return found


def describe_type(annotation: Any, info: FieldInfo) -> str:
    """A noun phrase for what the annotation accepts: "an integer >= 1", "true or false"."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        # A file leaves a setting unset by omitting it, so "or unset" would only add noise.
        return " or ".join(describe_type(a, info) for a in args)
    if origin is typing.Annotated:
        funcs = _validators(annotation)
        if parse_duration in funcs:
            return (
                DURATION_HINT + _range(info).replace(" ", " (", 1) + (")" if _range(info) else "")
            )
        if parse_size in funcs:
            return SIZE_HINT + (f" ({_range(info).strip()})" if _range(info) else "")
        return describe_type(typing.get_args(annotation)[0], info)
    if origin is Literal:
        # Quoted the way TOML and JSON write strings, since that is what people type.
        return "one of " + ", ".join(json.dumps(a) for a in typing.get_args(annotation))
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer" + _range(info)
    if annotation is float:
        return "a number" + _range(info)
    if annotation is str:
        return "a string"
    if origin is list:
        return "a list"
    if origin is dict:
        return "a table"
    return "a valid value"


def expected_for(model: type[BaseModel], loc: tuple[Any, ...], error: Any) -> str:
    """The "expected ..." text for one pydantic error at ``loc`` of ``model``."""
    message = str(error.get("msg", ""))
    if error.get("type") == "value_error":
        # Our validators word their messages already ("expected ...", "x is not ...").
        return message.removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        return "unknown setting"
    if error.get("type") == "missing":
        return "required"
    if not loc or loc[0] not in model.model_fields:
        return message
    info = _nested_field(model, loc)
    if info is None:
        return message
    return "expected " + describe_field(info)


def _nested_field(model: type[BaseModel], loc: tuple[Any, ...]) -> FieldInfo | None:
    """The field at ``loc``, through lists and nested models (``listeners[0].tls.certfile``)."""
    info: FieldInfo | None = None
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            continue  # a list index
        if current is None or part not in current.model_fields:
            return None
        info = current.model_fields[part]
        current = _model_in(info.annotation)
    return info


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def describe_field(info: FieldInfo) -> str:
    """What a field accepts: its declared ``expects`` wording, else words from its type."""
    extra = info.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("expects"), str):
        return str(extra["expects"])
    return describe_type(info.annotation if not info.metadata else _annotated(info), info)


def _annotated(info: FieldInfo) -> Any:
    # pydantic strips Annotated metadata into info.metadata; rebuild enough to recognise units.
    annotation = info.annotation
    funcs = [m for m in info.metadata if getattr(m, "func", None) is not None]
    if funcs:
        return typing.Annotated.__class_getitem__((annotation, *funcs))  # type: ignore[attr-defined]
    return annotation
