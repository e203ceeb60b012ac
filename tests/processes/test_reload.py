"""--reload in a real process: an edit to a watched module serves the new code; an invalid
edit to the config file prints the errors and keeps the server."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.lifecycle.procs import free_port, running, wait_for_output

pytestmark = pytest.mark.timeout(60)

APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b"{version}"}})
"""


def answer(port: int) -> str | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text
    except httpx.TransportError:
        return None


def wait_for_answer(port: int, text: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while answer(port) != text:
        assert time.monotonic() < deadline, f"never answered {text!r}"
        time.sleep(0.1)


def test_reload_serves_edited_code_and_keeps_serving_through_a_bad_config(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "reloaded_app.py").write_text(APP.format(version="v1"))
    config = tmp_path / "app.toml"
    good = (
        'app = "reloaded_app:app"\n'
        f'app_dir = "{tmp_path}"\n'
        "[server]\n"
        f"port = {port}\n"
        "[reload]\n"
        "enabled = true\n"
        f'dirs = ["{tmp_path}"]\n'
        "delay = 0.1\n"
    )
    config.write_text(good)
    with running(["-m", "appserver", "serve", str(config)], cwd=tmp_path) as proc:
        wait_for_answer(port, "v1")
        (tmp_path / "reloaded_app.py").write_text(APP.format(version="v2"))
        wait_for_answer(port, "v2")
        config.write_text(good + "[limits]\nconcurrency = 0\n")
        wait_for_output(proc, "Reload refused: 1 problem")
        assert "limits.concurrency = 0: expected an integer >= 1" in proc.output()
        assert answer(port) == "v2"
        config.write_text(good)
        (tmp_path / "reloaded_app.py").write_text(APP.format(version="v3"))
        wait_for_answer(port, "v3")
        proc.signal(signal.SIGTERM)
        result = proc.wait(20)
    assert result.returncode == 0, result.output
