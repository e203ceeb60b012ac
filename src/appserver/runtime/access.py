"""The access log line, safe to write whatever the client sent.

Everything in the line that a client controls (the percent-decoded path, the query, the client
address a proxy header supplied) is escaped: control characters become ``\\xNN``, and quotes
and backslashes are escaped, so a ``%0d%0a`` in a path cannot forge a second log line and an
ESC byte cannot reach the terminal (uvicorn CVE-2020-7694; nginx escapes ``"``, ``\\`` and bytes
outside 0x20..0x7e the same way in its access log).
"""

from __future__ import annotations

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
