"""The CLI as a real subprocess: exit codes, output, no tracebacks, serve and SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.toml"))


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPSERVER_")}
    env["PYTHONPATH"] = str(ROOT)  # for examples.hello
    env.update(extra)
    return env


def appserver(
    *args: str | Path, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "appserver", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env or clean_env(),
        cwd=cwd,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_checks(config: Path) -> None:
    result = appserver("check", config)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{config}: ok\n"


def test_version() -> None:
    result = appserver("--version")
    assert result.returncode == 0
    # The version, and which HTTP core is active (appserver._accel).
    assert result.stdout.startswith("appserver 0.1.0 (HTTP core: ")
    assert result.stdout.endswith(")\n")


def test_usage_error_exits_2() -> None:
    result = appserver("check", "--no-such-flag")
    assert result.returncode == 2
    assert "No such option" in result.stderr


def test_check_invalid_file_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "prod.toml"
    path.write_text('app = "m:a"\n[limits]\nconcurency = 5\nconcurrency = "many"\n')
    result = appserver("check", path, env=clean_env(APPSERVER_PORT="80a"))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}: invalid configuration (3 problems):",
        f"  {path}:3: limits.concurency: unknown setting (did you mean limits.concurrency?)",
        f'  {path}:4: limits.concurrency = "many": expected an integer >= 1',
        '  APPSERVER_PORT="80a": expected an integer 0..65535',
    ]


def test_check_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[server\n")
    result = appserver("check", path)
    assert result.returncode == 1
    assert f"{path}:1:8: invalid TOML" in result.stderr


def test_check_missing_file() -> None:
    result = appserver("check", "nope.toml")
    assert result.returncode == 1
    assert "nope.toml: cannot read the file" in result.stderr


def test_check_requires_an_app() -> None:
    result = appserver("check")
    assert result.returncode == 1
    assert 'app: required: set app = "module:attribute"' in result.stderr


def test_unknown_variable_is_an_error_on_check() -> None:
    result = appserver("check", "--app", "m:a", env=clean_env(APPSERVER_PROT="80"))
    assert result.returncode == 1
    assert 'APPSERVER_PROT="80": unknown variable (did you mean APPSERVER_PORT?)' in result.stderr


def test_flag_errors_name_the_flag() -> None:
    result = appserver("check", "--app", "m:a", "--port", "x", "--set", "limits.concurrency=0")
    assert result.returncode == 1
    assert '  --set limits.concurrency="0": expected an integer >= 1' in result.stderr
    assert '  --port="x": expected an integer 0..65535' in result.stderr


def test_print_shows_values_and_sources(tmp_path: Path) -> None:
    path = tmp_path / "app.toml"
    path.write_text('app = "m:a"\n[server]\nport = 1\nhost = "0.0.0.0"\n')
    env_file = tmp_path / ".env"
    env_file.write_text("APPSERVER_PORT=2\nAPPSERVER_BACKLOG=10\n")
    result = appserver(
        "check",
        path,
        "--env-file",
        env_file,
        "--print",
        "--no-access-log",
        "--set",
        "limits.concurrency=7",
        env=clean_env(APPSERVER_BACKLOG="20", APPSERVER_LOG_LEVEL="debug"),
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    assert rows["app"] == ['"m:a"', f"{path}:1"]
    assert rows["server.host"] == ['"0.0.0.0"', f"{path}:4"]
    assert rows["server.port"] == ["2", f"{env_file}:1", "APPSERVER_PORT"]
    assert rows["server.backlog"] == ["20", "environment", "APPSERVER_BACKLOG"]
    assert rows["logging.access_log"] == ["false", "flag", "--no-access-log"]
    assert rows["limits.concurrency"] == ["7", "flag", "--set", "limits.concurrency"]
    assert rows["server.uds"] == ["unset", "default"]


def test_flag_beats_environment_beats_file(tmp_path: Path) -> None:
    path = tmp_path / "app.toml"
    path.write_text('app = "m:a"\n[server]\nport = 1\n')
    env = clean_env(APPSERVER_PORT="2")
    report = json.loads(appserver("check", path, "--format", "json", env=env).stdout)
    assert report["results"][0]["settings"]["server.port"]["value"] == 2
    report = json.loads(appserver("check", path, "--port", "3", "--format", "json", env=env).stdout)
    assert report["results"][0]["settings"]["server.port"] == {
        "value": 3,
        "source": "flag --port",
        "env": "APPSERVER_PORT",
    }


def test_json_format_for_invalid_config(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('app = "m:a"\n[server]\nport = -1\n')
    result = appserver("check", path, "--format", "json")
    assert result.returncode == 1
    assert json.loads(result.stdout) == {
        "valid": False,
        "results": [
            {
                "file": str(path),
                "valid": False,
                "errors": [f"{path}:3: server.port = -1: expected an integer 0..65535"],
                "warnings": [],
            }
        ],
    }


def test_check_several_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[limts]\n")
    result = appserver("check", CONFIGS[0], bad)
    assert result.returncode == 1
    assert f"{CONFIGS[0]}: ok" in result.stdout
    assert "did you mean [limits]?" in result.stderr


def test_check_is_fast_and_imports_nothing_heavy(tmp_path: Path) -> None:
    (tmp_path / "trap.py").write_text("raise SystemExit('the app was imported')\napp = None\n")
    code = (
        "import sys\n"
        "sys.argv = ['appserver', 'check', '--app', 'trap:app']\n"
        "from appserver.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = {'uvloop', 'httptools', 'trap'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "print('clean')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("clean\n")


def test_import_app_imports_and_verifies(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(
        "async def app(scope, receive, send):\n    pass\n\n"
        "def create():\n    return app\n\n"
        "not_callable = 42\n"
    )
    env = clean_env(PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}")
    ok = appserver("check", "--app", "myapp:app", "--import-app", env=env)
    assert ok.returncode == 0, ok.stderr
    factory = appserver("check", "--app", "myapp:create", "--factory", "--import-app", env=env)
    assert factory.returncode == 0, factory.stderr
    bad = appserver("check", "--app", "myapp:not_callable", "--import-app", env=env)
    assert bad.returncode == 1
    assert "is not callable" in bad.stderr
    missing = appserver("check", "--app", "nomodule:app", "--import-app", env=env)
    assert missing.returncode == 1
    assert "no module named 'nomodule'" in missing.stderr


def test_schema_is_json() -> None:
    result = appserver("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert "concurrency" in schema["properties"]["limits"]["properties"]


def test_serve_invalid_config_prints_errors_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('app = "m:a"\n[limits]\nconcurency = 1\n')
    result = appserver("serve", path)
    assert result.returncode == 1
    assert f"{path}:3: limits.concurency: unknown setting" in result.stderr


# --- serve, for real ------------------------------------------------------------------------------
@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def wait_for_url(process: subprocess.Popen[str], lines: list[str]) -> str:
    assert process.stderr is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"Listening on (http://\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError("server did not start:\n" + "".join(lines))


def serve(started: list[subprocess.Popen[str]], *args: str, **env: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "appserver", "serve", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(**env),
        cwd=ROOT,
    )
    started.append(process)
    return process


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=15)
    assert process.returncode == 0, rest
    return rest


def test_serve_with_only_app_flag(started: list[subprocess.Popen[str]]) -> None:
    process = serve(started, "--app", "examples.hello:app", "--port", "0")
    lines: list[str] = []
    url = wait_for_url(process, lines)
    response = httpx.get(url + "/", timeout=10)
    assert response.status_code == 200
    assert response.text == "Hello, world!"
    assert "Traceback" not in stop(process)


def test_serve_from_file_env_and_flags(
    started: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    path = tmp_path / "app.toml"
    path.write_text(
        'app = "examples.hello:app"\n[server]\nport = 1\n[headers.custom]\nx-from = "file"\n'
    )
    process = serve(
        started,
        str(path),
        "--port",
        "0",
        APPSERVER_SERVER_HEADER="false",
        APPSERVER_PROT="1",
    )
    lines: list[str] = []
    url = wait_for_url(process, lines)
    assert any("warning: APPSERVER_PROT" in line for line in lines)
    response = httpx.get(url + "/", timeout=10)
    assert response.headers["x-from"] == "file"
    assert "server" not in response.headers
    stop(process)


def test_installed_script_imports_apps_from_the_working_directory() -> None:
    # `python -m appserver` puts the working directory on sys.path by itself; the installed
    # console script (what `make serve` runs) does not, so the loader must.
    script = Path(sys.executable).with_name("appserver")
    env = clean_env()
    del env["PYTHONPATH"]
    result = subprocess.run(
        [str(script), "check", "--import-app", "configs/example.toml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_refuses_framing_and_hop_by_hop_custom_headers(tmp_path: Path) -> None:
    # content-length = "5" would go out beside the real Content-Length on every response.
    config = tmp_path / "headers.toml"
    config.write_text(
        'app = "examples.hello:app"\n\n[headers.custom]\nx-ok = "1"\ncontent-length = "5"\n'
    )
    result = appserver("check", config)
    assert result.returncode == 1
    assert f'{config}:5: headers.custom.content-length = "5": cannot be set here' in result.stderr
    for name in ("Transfer-Encoding", "connection", "keep-alive", "upgrade", "te", "trailer"):
        result = appserver("check", "--app", "examples.hello:app", "--header", f"{name}: x")
        assert result.returncode == 1, name
        assert f"headers.custom.{name}: cannot be set here" in result.stderr
    result = appserver(
        "check",
        env=clean_env(
            APPSERVER_APP="examples.hello:app", APPSERVER_HEADERS="proxy-connection: close"
        ),
    )
    assert result.returncode == 1
    assert "APPSERVER_HEADERS" in result.stderr
