"""``appserver serve`` replaces itself with a process that only serves (appserver.serving).

Real subprocesses: the CLI validates, then execs ``python -m appserver.serving``; the app in
tests/introspect_app.py reports what that process holds.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx

from tests.lifecycle.procs import (
    Proc,
    free_port,
    running,
    wait_for_output,
    wait_until_serving,
)

APP = "tests.introspect_app:app"


def seen(port: int) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"http://127.0.0.1:{port}/", timeout=10).json()
    return answer


def command_line(proc: Proc) -> list[str]:
    return Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def stop(proc: Proc) -> str:
    proc.signal(signal.SIGTERM)
    result = proc.wait()
    assert result.returncode == 0, result.output
    return result.output


def test_the_serving_process_holds_no_pydantic_typer_or_click() -> None:
    port = free_port()
    args = ["serve", "--app", APP, "--port", str(port), "--log-level", "info"]
    with running(["-X", "faulthandler", "-m", "appserver", *args]) as proc:
        wait_until_serving(proc, port)
        found = seen(port)
        assert found["pid"] == proc.pid  # replaced in place: same process id
        assert "appserver.serving" in command_line(proc)
        assert found["modules"] == []
        assert found["argv"][1:] == args  # what the app sees is what was typed
        assert found["argv"][0].endswith("__main__.py")
        assert found["xoptions"] == {"faulthandler": True}  # interpreter flags carried over
        # The handoff file (unlinked, so "(deleted)") is closed once read.
        assert not [f for f in found["open_files"] if f.endswith("(deleted)")]
        output = stop(proc)
    assert "Traceback" not in output
    assert output.count("Listening on") == 1, output  # said once, by the serving process


def test_a_traced_process_serves_in_place() -> None:
    # A debugger or coverage (sys.settrace) would lose a replaced process: it is kept.
    port = free_port()
    code = (
        "import sys; sys.settrace(lambda *a: None); "
        f"sys.argv = ['appserver', 'serve', '--app', {APP!r}, '--port', '{port}']; "
        "from appserver.cli import main; main()"
    )
    with running(["-c", code]) as proc:
        wait_until_serving(proc, port)
        found = seen(port)
        assert "appserver.serving" not in command_line(proc)
        assert "pydantic" in found["modules"]
        stop(proc)


def test_sighup_rereads_the_sources_in_the_serving_process(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "app.toml"
    good = (
        f'app = "{APP}"\n[server]\nport = {port}\n'
        '[headers.custom]\nx-from = "file"\n[timeouts]\nkeep_alive = "5s"\n'
    )
    config.write_text(good)
    with running(["-m", "appserver", "serve", str(config)]) as proc:
        wait_until_serving(proc, port)
        assert seen(port)["modules"] == []
        config.write_text(good + "[limits]\nconcurrency = 0\n")
        proc.signal(signal.SIGHUP)
        wait_for_output(proc, "Reload refused: 1 problem; nothing changed")
        assert "limits.concurrency = 0: expected an integer >= 1" in proc.output()
        config.write_text(good.replace('"5s"', '"7s"'))
        proc.signal(signal.SIGHUP)
        # Only the edited setting differs from what the settled copy holds: the listeners and
        # the headers it read compare equal to the ones read again.
        wait_for_output(proc, "These changes need a restart to apply: timeout_keep_alive\n")
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
        stop(proc)
