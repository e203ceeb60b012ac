"""The TOML reader: values by setting, line numbers, unknown keys and tables, syntax errors."""

from __future__ import annotations

from pathlib import Path

from appserver.config.toml_file import key_lines, read_toml


def write(tmp_path: Path, text: str, name: str = "prod.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_values_by_setting_with_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'app = "m:app"\n\n[server]\nport = 9000\n\n[limits]\n# a comment\nconcurrency = 10\n'
        '\n[headers.custom]\nx-a = "1"\n',
    )
    read = read_toml(path)
    assert read.errors == []
    assert read.values == {
        "app": "m:app",
        "port": 9000,
        "limit_concurrency": 10,
        "headers": {"x-a": "1"},
    }
    assert read.where("port") == f"{path}:4"
    assert read.where("limit_concurrency") == f"{path}:8"
    assert read.where("headers") == f"{path}:10"


def test_key_lines_understands_dotted_and_quoted_keys() -> None:
    text = 'limits.concurrency = 5\n[server]\n"port" = 1\n[headers]\ncustom = { a = "b" }\n'
    lines = key_lines(text)
    assert lines[("limits", "concurrency")] == 1
    assert lines[("server", "port")] == 3
    assert lines[("headers", "custom")] == 5


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(tmp_path, "[limits]\nconcurency = 5\n")
    (error,) = read_toml(path).errors
    assert str(error) == (
        f"{path}:2: limits.concurency: unknown setting (did you mean limits.concurrency?)"
    )


def test_unknown_table_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(tmp_path, 'app = "m:a"\n\n[limts]\nconcurrency = 5\n')
    (error,) = read_toml(path).errors
    assert str(error) == f"{path}:3: [limts]: unknown table (did you mean [limits]?)"


def test_key_in_the_wrong_table_names_its_place(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 80\n")
    (error,) = read_toml(path).errors
    assert str(error) == f"{path}:1: port: unknown setting (did you mean server.port?)"


def test_a_table_given_a_value(tmp_path: Path) -> None:
    path = write(tmp_path, "server = 5\n")
    (error,) = read_toml(path).errors
    assert str(error) == f"{path}:1: server = 5: expected a table [server]"


def test_every_unknown_key_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nhots = 1\nprot = 2\n[limits]\nconcurency = 3\n")
    assert [str(e).split(": ")[0] for e in read_toml(path).errors] == [
        f"{path}:2",
        f"{path}:3",
        f"{path}:5",
    ]


def test_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, 'app = "m:a"\n[server\nport = 1\n')
    (error,) = read_toml(path).errors
    assert str(error).startswith(f"{path}:2:8: invalid TOML: ")
    assert "(at line" not in str(error)


def test_missing_file(tmp_path: Path) -> None:
    (error,) = read_toml(tmp_path / "nope.toml").errors
    assert (
        str(error) == f"{tmp_path / 'nope.toml'}: cannot read the file: No such file or directory"
    )
