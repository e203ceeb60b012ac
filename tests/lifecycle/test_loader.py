"""App import errors name the right module: the app's own, or the one it failed to import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appserver.errors import AppLoadError
from appserver.runtime.loader import import_from_string


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        # The app's module imports a missing module whose name is a prefix of its own.
        ("import miss\n", "missing_dep_a:app", "No module named 'miss'"),
        ("import unrelated_missing_x\n", "missing_dep_b:app", "'unrelated_missing_x'"),
    ],
)
def test_missing_dependency_is_named(modules: Path, source: str, target: str, message: str) -> None:
    (modules / f"{target.partition(':')[0]}.py").write_text(source)
    with pytest.raises(AppLoadError) as info:
        import_from_string(target)
    assert message in str(info.value)
    assert "no module named 'missing_dep" not in str(info.value)


@pytest.mark.parametrize("target", ["no_such_module_q:app", "no_such_pkg_q.sub:app"])
def test_missing_app_module_is_named(target: str) -> None:
    module = target.partition(":")[0]
    with pytest.raises(AppLoadError, match=f"no module named '{module}'"):
        import_from_string(target)


def test_auto_websockets_are_imported_by_the_first_upgrade_only() -> None:
    """An HTTP-only server does not load websockets (most of a MiB): ws = "auto" checks that the
    library is installed and imports it for the first upgrade."""
    code = (
        "import sys\n"
        "from appserver import Config\n"
        "config = Config(app='tests.lifecycle.apps:slow', ws='auto', log_config=None)\n"
        "config.load()\n"
        "assert 'websockets' not in sys.modules, 'websockets imported by load()'\n"
        "assert config.ws_protocol_class is not None\n"
        "assert 'websockets' in sys.modules\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr


def test_auto_websockets_that_fail_to_import_turn_websockets_off(tmp_path: Path) -> None:
    """websockets found at load but broken: said once, and upgrades are served as plain HTTP
    instead of failing each connection."""
    (tmp_path / "websockets").mkdir()
    (tmp_path / "websockets" / "__init__.py").write_text("raise RuntimeError('broken install')\n")
    code = (
        "import logging\n"
        "logging.basicConfig()\n"
        "from appserver import Config\n"
        "config = Config(app='tests.lifecycle.apps:slow', ws='auto', log_config=None)\n"
        "config.load()\n"
        "assert config.ws_protocol_class is None\n"
        "assert config.ws_protocol_class is None\n"
    )
    root = Path(__file__).resolve().parents[2]
    path = os.pathsep.join([str(tmp_path), str(root / "src"), str(root)])
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("importing websockets failed: broken install") == 1, done.stderr
