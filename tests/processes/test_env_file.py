"""env_file, uvicorn's keyword: the file's variables reach the app; set ones win."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from tests.lifecycle.procs import free_port, running, wait_until_serving

APP = "tests.processes.apps:environment"


def run_code(port: int, env_file: Path) -> list[str]:
    return [
        "-c",
        f"import appserver\nappserver.run({APP!r}, port={port}, env_file={str(env_file)!r})",
    ]


def test_env_file_keyword_and_flag_give_the_app_its_variables(tmp_path: Path) -> None:
    env = tmp_path / "app.env"
    env.write_text("GREETING=hello from the file\n")
    ports = [free_port(), free_port(), free_port()]
    flag = [
        "-m",
        "appserver",
        "serve",
        "--app",
        APP,
        "--port",
        str(ports[1]),
        "--env-file",
        str(env),
    ]
    with (
        running(run_code(ports[0], env)) as keyword,
        running(flag) as cli,
        running(run_code(ports[2], env), env={"GREETING": "already set"}) as preset,
    ):
        answers = []
        for proc, port in zip((keyword, cli, preset), ports, strict=True):
            wait_until_serving(proc, port)
            answers.append(httpx.get(f"http://127.0.0.1:{port}/").text)
        for proc in (keyword, cli, preset):
            proc.signal(signal.SIGTERM)
            assert proc.wait().returncode == 0
    assert answers == ["hello from the file", "hello from the file", "already set"]
