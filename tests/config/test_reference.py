"""The README reference and the JSON Schema are generated from the one definition."""

from __future__ import annotations

from pathlib import Path

from appserver import Config
from appserver.config.reference import markdown_table
from appserver.config.schema import json_schema
from appserver.config.settings import SETTINGS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_reference_matches_the_definition() -> None:
    text = README.read_text()
    section = text.split("<!-- section: configuration -->")[1].split(
        "<!-- /section: configuration -->"
    )[0]
    table = section.split("<!-- reference -->\n")[1].split("<!-- /reference -->")[0]
    assert table == markdown_table(), (
        "README.md's configuration reference is out of date: regenerate it with `make reference`"
    )


def test_every_file_setting_is_in_the_table_once() -> None:
    table = markdown_table()
    for setting in SETTINGS:
        assert table.count(f"| `{setting.toml}` |") == 1
        assert f"`{setting.env}`" in table


def test_python_only_settings_stay_out_of_files() -> None:
    assert "callback_notify" in Config.model_fields
    assert all(s.name != "callback_notify" for s in SETTINGS)


def test_schema_has_nested_tables_and_forbids_extras() -> None:
    schema = json_schema()
    assert schema["additionalProperties"] is False
    limits = schema["properties"]["limits"]
    assert limits["additionalProperties"] is False
    assert limits["properties"]["concurrency"]["minimum"] == 1
    port = schema["properties"]["server"]["properties"]["port"]
    assert port == {
        "type": "integer",
        "minimum": 0,
        "maximum": 65535,
        "description": "TCP port to bind to (0: any free port).",
        "default": 8000,
    }
    keep_alive = schema["properties"]["timeouts"]["properties"]["keep_alive"]
    assert keep_alive["anyOf"][0] == {"type": "number", "exclusiveMinimum": 0}
    assert keep_alive["anyOf"][1]["type"] == "string"
    custom = schema["properties"]["headers"]["properties"]["custom"]
    assert {"type": "object", "additionalProperties": {"type": "string"}} in custom["anyOf"]


def test_schema_covers_every_setting() -> None:
    schema = json_schema()
    for setting in SETTINGS:
        node = schema
        for part in setting.toml.split("."):
            node = node["properties"][part]
        assert node["description"] == setting.doc
