"""The access log line, safe to write whatever the client sent.

Everything in the line that a client controls (the percent-decoded path, the query, the client
address a proxy header supplied) is escaped: control characters become ``\\xNN``, and quotes
and backslashes are escaped, so a ``%0d%0a`` in a path cannot forge a second log line and an
ESC byte cannot reach the terminal (uvicorn CVE-2020-7694; nginx escapes ``"``, ``\\`` and bytes
outside 0x20..0x7e the same way in its access log).
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

from appserver.runtime.logs import access_logger

# C0 controls, DEL and the C1 controls (a terminal reads some of those as escapes too).
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f"\\]')


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in '"\\':
        return "\\" + char
    return f"\\x{ord(char):02x}"


def escape(text: str) -> str:
    """``text`` with control characters, quotes and backslashes escaped for a log line."""
    return _UNSAFE.sub(_escape_char, text) if _UNSAFE.search(text) else text


def log_access(scope: Any, status: int) -> None:
    """One line: ``client - "METHOD path?query HTTP/version" status``."""
    client = scope["client"]
    path = scope["path"]
    if scope["query_string"]:
        path = f"{path}?{scope['query_string'].decode('latin-1')}"
    access_logger.info(
        '%s - "%s %s HTTP/%s" %d',
        escape(f"{client[0]}:{client[1]}") if client else "-",
        scope["method"],
        escape(path),
        scope["http_version"],
        status,
    )


def _header(scope: Any, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _now() -> str:
    """The time field of json and template lines: ISO 8601, UTC, milliseconds."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _client(scope: Any) -> str:
    client = scope["client"]
    return f"{client[0]}:{client[1]}" if client else "-"


def access_fields(
    scope: Any, status: int, sent: int, seconds: float, request_id: str | None
) -> dict[str, Any]:
    """Every field of the json and template formats (:data:`ACCESS_FIELDS`)."""
    return {
        "time": _now(),
        "client": _client(scope),
        "method": scope["method"],
        "path": scope["path"],
        "query": scope["query_string"].decode("latin-1"),
        "status": status,
        "bytes": sent,
        "duration_ms": round(seconds * 1000.0, 3),
        "http_version": scope["http_version"],
        "request_id": request_id,
        "user_agent": _header(scope, b"user-agent"),
        "referer": _header(scope, b"referer"),
    }


class AccessLog:
    """The access line in the configured format: "text" (:func:`log_access`'s), "json" (one
    object per line, always valid JSON: ``json.dumps`` escapes every control character, and
    ``ensure_ascii`` the C1 ones a terminal would act on), or a template of named fields, each
    value escaped as in the text line."""

    __slots__ = ("rich", "template")

    def __init__(self, fmt: str) -> None:
        self.template = fmt
        self.rich = fmt != "text"  # needs the duration and the bytes sent

    def request(
        self, scope: Any, status: int, sent: int, seconds: float, request_id: str | None
    ) -> None:
        fmt = self.template
        if fmt == "text":
            log_access(scope, status)
            return
        fields = access_fields(scope, status, sent, seconds, request_id)
        if fmt == "json":
            access_logger.info("%s", json.dumps(fields))
            return
        shown = {k: escape(str(v)) if v is not None else "-" for k, v in fields.items()}
        access_logger.info("%s", fmt.format_map(shown))

    def websocket(self, scope: Any, event: str, code: int | None, seconds: float | None) -> None:
        """A WebSocket session opened (``event`` "open") or closed ("close", with its code)."""
        if self.template == "json":
            record: dict[str, Any] = {
                "time": _now(),
                "event": f"websocket.{event}",
                "client": _client(scope),
                "path": scope["path"],
            }
            if code is not None:
                record["code"] = code
            if seconds is not None:
                record["duration_ms"] = round(seconds * 1000.0, 3)
            access_logger.info("%s", json.dumps(record))
            return
        # uvicorn's shape: client - "WebSocket /path" [accepted]; then the close with its code.
        where = escape(_client(scope))
        if event == "open":
            access_logger.info('%s - "WebSocket %s" open', where, escape(scope["path"]))
        else:
            access_logger.info(
                '%s - "WebSocket %s" closed %s after %.0f ms',
                where,
                escape(scope["path"]),
                code,
                (seconds or 0.0) * 1000.0,
            )
