"""The README's configuration reference, generated from the settings' one definition.

``tests/config/test_reference.py`` fails when README.md's table differs from
:func:`markdown_table`; regenerate it with ``python -m appserver.config.reference``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from appserver.config.describe import describe_field
from appserver.config.listeners import ListenerConfig, TLSConfig
from appserver.config.settings import SETTINGS, Setting


def _default(setting: Setting) -> str:
    value: Any = setting.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, list):
        return "`" + json.dumps([list(v) if isinstance(v, tuple) else v for v in value]) + "`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table() -> str:
    """One row per setting: TOML key, environment variable, flag, accepts, default, meaning."""
    lines = [
        "| TOML key | Environment variable | Flag | Accepts | Default | Description |",
        "|---|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        flag = f"`{s.cli}`" if s.cli else ""
        lines.append(
            f"| `{s.toml}` | `{s.env}` | {flag} | {_cell(s.expected)} | {_default(s)} "
            f"| {_cell(s.doc)} |"
        )
    lines += [
        "",
        "Each `[[listeners]]` table, and its `[listeners.tls]`:",
        "",
        "| Key | Accepts | Default | Description |",
        "|---|---|---|---|",
    ]
    lines += _model_rows("listeners", ListenerConfig)
    lines += _model_rows("listeners.tls", TLSConfig)
    return "\n".join(lines) + "\n"


def _model_rows(prefix: str, model: type[BaseModel]) -> list[str]:
    rows = []
    for name, info in model.model_fields.items():
        if name == "tls":
            continue  # its own rows follow
        default = info.default
        shown = (
            "required"
            if default is PydanticUndefined
            else ("unset" if default is None else f"`{json.dumps(default)}`")
        )
        rows.append(
            f"| `{prefix}.{name}` | {_cell(describe_field(info))} | {shown} "
            f"| {_cell(info.description or '')} |"
        )
    return rows


def update_readme(path: str) -> None:
    """Rewrite the table between the ``<!-- reference -->`` markers of ``path``."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    start = text.index("<!-- reference -->\n") + len("<!-- reference -->\n")
    end = text.index("<!-- /reference -->")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text[:start] + markdown_table() + text[end:])


if __name__ == "__main__":  # pragma: no cover
    import sys

    if len(sys.argv) > 1:
        update_readme(sys.argv[1])  # python -m appserver.config.reference README.md
    else:
        print(markdown_table(), end="")
