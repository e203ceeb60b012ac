"""``appserver serve`` replaces itself with a process that only serves (appserver.serving).

Real subprocesses: the CLI validates, then execs its own command line again with the settled
configuration in a descriptor; the app in tests/introspect_app.py reports what that process holds.
"""

from __future__ import annotations

import pickle
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from appserver.config.model import Config
from appserver.serving import Sources, handoff_payload, same_command
from tests.lifecycle.procs import (
    Proc,
    free_port,
    running,
    stop,
    wait_for_output,
    wait_until_serving,
)

APP = "tests.introspect_app:app"


def seen(port: int) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"http://127.0.0.1:{port}/", timeout=10).json()
    return answer


def command_line(proc: Proc) -> list[str]:
    return Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def test_python_m_appserver_serve_becomes_a_process_without_pydantic_typer_or_click() -> None:
    port = free_port()
    args = ["serve", "--app", APP, "--port", str(port), "--log-level", "info"]
    flags = ["-u", "-X", "faulthandler", "-X", "int_max_str_digits=5000"]
    env = {"PYTHONUNBUFFERED": ""}  # so that only -u makes stdout unbuffered
    with running([*flags, "-m", "appserver", *args], env=env) as proc:
        wait_until_serving(proc, port)
        found = seen(port)
        assert found["pid"] == proc.pid  # replaced in place: same process id
        assert found["modules"] == []  # the CLI had imported all of them
        assert command_line(proc)[-len(args) - 2 :] == ["-m", "appserver", *args]
        assert found["argv"][1:] == args  # what the app sees is what was typed
        # The interpreter's flags carried over, those multiprocessing's list leaves out too.
        assert found["xoptions"] == {"faulthandler": True, "int_max_str_digits": "5000"}
        assert found["write_through"] is True
        assert found["handoff_variable"] is False  # not the app's, nor its children's
        # The handoff (a memfd, which reads as "(deleted)") is closed once read.
        assert not [f for f in found["open_files"] if f.endswith("(deleted)")]
        output = stop(proc)
    assert "Traceback" not in output
    assert output.count("Listening on") == 1, output  # said once, by the serving process


def test_the_console_script_keeps_its_name() -> None:
    script = str(Path(sys.executable).with_name("appserver"))  # what `make serve`, systemd run
    port = free_port()
    args = ["serve", "--app", APP, "--port", str(port)]
    with running(args, program=script) as proc:
        wait_until_serving(proc, port)
        assert seen(port)["modules"] == []
        assert Path(f"/proc/{proc.pid}/comm").read_text().strip() == "appserver"  # pgrep
        assert command_line(proc)[1:] == [script, *args]
        stop(proc)


def test_a_program_calling_the_cli_or_a_profiled_one_serves_in_place() -> None:
    # A program that calls the CLI keeps its own state (threads, atexit handlers) and would run
    # again whole; a profiler (here cProfile, sys.setprofile) would lose a replaced process.
    port = free_port()
    args = ["serve", "--app", APP, "--port", str(port)]
    starts = [
        ["-c", f"import sys; sys.argv = {['appserver', *args]!r}; {prologue}; main()"]
        for prologue in ("from appserver.cli import main", "from appserver.__main__ import main")
    ]
    starts.append(["-m", "cProfile", "-m", "appserver", *args])
    for start in starts:
        with running(start) as proc:
            wait_until_serving(proc, port)
            assert "pydantic" in seen(port)["modules"], start
            stop(proc)


@pytest.mark.parametrize(
    ("orig_argv", "argv", "again"),
    [
        (["py", "-m", "appserver", "serve"], ["/x/__main__.py", "serve"], True),
        (["py", "-u", "-X", "dev", "-Wd", "-m", "appserver", "serve"], ["/m.py", "serve"], True),
        (["py", "/venv/bin/appserver", "serve"], ["/venv/bin/appserver", "serve"], True),
        (["py", "-I", "/venv/bin/appserver", "serve"], ["/venv/bin/appserver", "serve"], True),
        (["py", "-m", "cProfile", "-m", "appserver", "serve"], ["/m.py", "serve"], False),
        (["py", "-c", "main()"], ["-c"], False),
        (["py", "-"], ["-"], False),
        (["py"], [""], False),
        (["py", "/srv/wrapper.py", "serve"], ["/srv/wrapper.py", "serve"], False),
        (["py", "/venv/bin/memray", "run", "-m", "appserver"], ["/m.py", "serve"], False),
    ],
)
def test_only_appservers_own_command_runs_again(
    monkeypatch: pytest.MonkeyPatch, orig_argv: list[str], argv: list[str], again: bool
) -> None:
    monkeypatch.setattr(sys, "orig_argv", orig_argv)
    monkeypatch.setattr(sys, "argv", argv)
    command = same_command()
    if not again:
        assert command is None
        return
    assert command == [sys.executable, *orig_argv[1:]]  # not executable: through the interpreter


def test_a_startup_failure_still_exits_3() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with running(["-m", "appserver", "serve", "--app", APP, "--port", str(port)]) as proc:
            result = proc.wait()
    assert result.returncode == 3, result.output
    assert "Traceback" not in result.output


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


def test_a_config_that_does_not_pickle_is_served_in_place() -> None:
    sources = Sources(None, None, {}, [])
    assert handoff_payload(Config(lambda scope, receive, send: None), sources) is None
    payload = handoff_payload(Config(APP, port=9001), sources)
    assert payload is not None
    handoff = pickle.loads(payload)
    assert handoff.config.port == 9001
    assert handoff.path == sys.path
