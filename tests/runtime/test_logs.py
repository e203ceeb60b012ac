"""Logging set-up, each case in a fresh interpreter: logging is process-wide state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done


DEFAULT = """
import logging, sys
own = logging.FileHandler("own.log", mode="w")
mine = logging.getLogger("myapp")
mine.addHandler(own)
mine.setLevel(logging.INFO)
mine.disabled = True  # as a dictConfig with disable_existing_loggers=True leaves it
child = logging.getLogger("appserver.child")
child.setLevel(logging.ERROR)
child.propagate = False
stale = logging.StreamHandler(sys.stderr)
logging.getLogger("appserver.error").addHandler(stale)

from appserver import Config
from appserver.runtime.logs import configure_logging
configure_logging(Config(app="m:a", log_level="warning"))
assert "logging.config" not in sys.modules

server = logging.getLogger("appserver")
error = logging.getLogger("appserver.error")
access = logging.getLogger("appserver.access")
[handler] = server.handlers
assert handler.stream is sys.stderr and handler.get_name() == "default"
assert handler.formatter._fmt == "%(asctime)s %(levelname)-7s %(message)s"
[handler] = access.handlers
assert handler.stream is sys.stdout and handler.get_name() == "access"
assert handler.formatter._fmt == "%(asctime)s ACCESS  %(message)s"
assert error.handlers == [] and error.propagate
assert not server.propagate and not access.propagate
# log_level = "warning" hides the access lines too, as uvicorn's does.
assert (server.level, error.level, access.level) == (30, 30, 30)
assert (child.level, child.handlers, child.propagate) == (0, [], True)
assert not mine.disabled
mine.info("still written")
own.flush()
assert open("own.log").read() == "still written\\n"
error.warning("to stderr")
access.info("hidden")
access.warning("to stdout")
"""


def test_default_logging_without_logging_config(tmp_path: Path) -> None:
    done = run_python(DEFAULT, tmp_path)
    assert done.stderr.endswith(" WARNING to stderr\n")
    assert done.stdout.endswith(" ACCESS  to stdout\n") and "hidden" not in done.stdout


def test_an_explicit_access_log_true_shows_access_lines_below_the_level(tmp_path: Path) -> None:
    code = (
        "import logging\n"
        "from appserver import Config\n"
        "from appserver.runtime.logs import configure_logging\n"
        "configure_logging(Config(app='m:a', log_level='warning', access_log=True))\n"
        "logging.getLogger('appserver.access').info('shown')\n"
        "logging.getLogger('appserver.error').info('not shown')\n"
    )
    done = run_python(code, tmp_path)
    assert done.stdout.endswith(" ACCESS  shown\n")
    assert "not shown" not in done.stderr


def test_log_format_json_writes_one_object_per_record(tmp_path: Path) -> None:
    code = (
        "import logging\n"
        "from appserver import Config\n"
        "from appserver.runtime.logs import configure_logging\n"
        "configure_logging(Config(app='m:a', log_format='json'))\n"
        "logging.getLogger('appserver.error').warning('a \"quoted\"\\nline')\n"
        "try:\n"
        "    1 / 0\n"
        "except ZeroDivisionError:\n"
        "    logging.getLogger('appserver.error').exception('failed')\n"
    )
    lines = run_python(code, tmp_path).stderr.splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "warning" and first["logger"] == "appserver.error"
    assert first["message"] == 'a "quoted"\nline' and first["time"].endswith("+00:00")
    assert second["message"] == "failed" and "ZeroDivisionError" in second["exception"]


def test_a_json_logging_config_file_is_applied(tmp_path: Path) -> None:
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"bare": {"format": "custom %(message)s"}},
        "handlers": {
            "out": {
                "class": "logging.StreamHandler",
                "formatter": "bare",
                "stream": "ext://sys.stdout",
            }
        },
        "loggers": {"appserver": {"handlers": ["out"], "propagate": False}},
    }
    (tmp_path / "logging.json").write_text(json.dumps(config))
    code = (
        "import logging\n"
        "from appserver import Config\n"
        "from appserver.runtime.logs import configure_logging\n"
        "configure_logging(Config(app='m:a', log_config='logging.json'))\n"
        "logging.getLogger('appserver.error').info('hello')\n"
    )
    assert run_python(code, tmp_path).stdout == "custom hello\n"


def test_a_broken_logging_file_is_one_line_for_check_and_serve(tmp_path: Path) -> None:
    (tmp_path / "bad.ini").write_text("[loggers]\nkeys=root\n")  # no [handlers], no root
    (tmp_path / "bad.yaml").write_text("version: 1\nhandlers: [unclosed\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    for name in ("bad.ini", "bad.yaml"):
        for command in (["check"], ["serve"]):
            done = subprocess.run(
                [sys.executable, "-m", "appserver", *command, "--app", "examples.hello:app",
                 "--log-config", name, "--port", "0"],
                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert done.returncode == (1 if command == ["check"] else 3), done.stderr
            assert "Traceback" not in done.stderr, done.stderr
            assert f"log_config '{name}' cannot be used" in done.stderr
