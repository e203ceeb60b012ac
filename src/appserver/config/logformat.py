"""The fields an access-log template may name, and the check of a template (data only).

A template is a ``str.format`` string of named fields, gunicorn's ``access_log_format`` in
braces instead of ``%()s``: ``"{client} {method} {path} {status} {duration_ms}"``. The values
are filled in by :mod:`appserver.runtime.access`, escaped for a log line.
"""

from __future__ import annotations

import string

# The JSON format writes every one of these; a template picks.
ACCESS_FIELDS: tuple[str, ...] = (
    "time",  # ISO 8601, UTC, milliseconds
    "client",  # "host:port" (after trusted proxy headers)
    "method",
    "path",
    "query",
    "status",
    "bytes",  # response body bytes sent
    "duration_ms",
    "http_version",
    "request_id",
    "user_agent",
    "referer",
)


def template_problem(template: str) -> str | None:
    """What is wrong with ``template`` as an access-log template, or None."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"expected a template of {{field}} names: {exc}"
    for _, name, spec, conversion in parts:
        if name is not None and (spec or conversion):
            # Every value is written as text (escaped): "{status:d}" would fail at each line.
            return f"expected plain {{field}} names, got {{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}"
    names = [name for _, name, _, _ in parts if name is not None]
    if not names:
        return (
            'expected "text", "json" or a template naming at least one {field} '
            f"({', '.join(ACCESS_FIELDS)})"
        )
    for name in names:
        if name not in ACCESS_FIELDS:
            return f"unknown field {{{name}}}: expected one of {', '.join(ACCESS_FIELDS)}"
    return None
