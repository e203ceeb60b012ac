"""Worker processes under the supervisor, in real processes: restart, health, startup failure,
rolling reload, recycling and scaling under load with zero failed requests."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.lifecycle.procs import Proc, free_port, running, stop, wait_for_output

pytestmark = pytest.mark.timeout(90)


def write_config(
    path: Path,
    port: int,
    extra: str = "",
    app: str = "tests.processes.apps:app",
    top: str = "",
    healthcheck: int = 1,
) -> Path:
    path.write_text(
        f'app = "{app}"\n{top}\n'
        + textwrap.dedent(
            f"""\
            [server]
            port = {port}

            [logging]
            access_log = false

            [processes]
            workers = 2
            healthcheck_timeout = {healthcheck}
            """
        )
        + textwrap.dedent(extra)
    )
    return path


@contextlib.contextmanager
def supervisor(config: Path, workers: int = 2) -> Iterator[Proc]:
    with running(["-m", "appserver", "serve", str(config)]) as proc:
        deadline = time.monotonic() + 20
        while len(ready_pids(proc)) < workers:
            assert proc.alive(), proc.output()
            assert time.monotonic() < deadline, proc.output()
            time.sleep(0.05)
        yield proc


def ready_pids(proc: Proc) -> list[int]:
    return [int(pid) for pid in re.findall(r"Worker \[(\d+)\] ready", proc.output())]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:  # gone between the two looks
        return False


def pids_serving(port: int, want: int, timeout: float = 10.0) -> set[int]:
    """The worker pids that answer, over new connections, until ``want`` different ones did."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < want and time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            seen.add(int(httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text))
    return seen


def drained(proc: Proc) -> str:
    """SIGTERM, every worker drains, exit 0 (two workers: a longer bound than one process)."""
    return stop(proc, timeout=30)


def test_two_workers_a_killed_one_is_replaced_sigterm_drains_both(tmp_path: Path) -> None:
    port = free_port()
    with supervisor(write_config(tmp_path / "app.toml", port)) as proc:
        first = set(ready_pids(proc))
        assert pids_serving(port, 2) == first
        victim = sorted(first)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for_output(proc, f"Worker [{victim}] died (signal 9), restarting")
        deadline = time.monotonic() + 10
        while len(ready_pids(proc)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        now = set(ready_pids(proc)) - {victim}
        assert len(now) == 2, proc.output()
        assert pids_serving(port, 2) == now
        output = drained(proc)
    assert "Finished supervisor process" in output
    assert not any(alive(pid) for pid in now)


def test_a_hung_worker_is_killed_and_replaced(tmp_path: Path) -> None:
    port = free_port()
    with supervisor(write_config(tmp_path / "app.toml", port)) as proc:
        with contextlib.suppress(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/hang", timeout=0.5)
        wait_for_output(proc, "did not answer for 1s: killed, restarting")
        deadline = time.monotonic() + 10
        while len(ready_pids(proc)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(ready_pids(proc)) == 3, proc.output()
        assert len(pids_serving(port, 2)) == 2
        drained(proc)


def test_a_worker_that_fails_to_start_stops_the_supervisor_with_status_3(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "app.toml",
        free_port(),
        app="tests.processes.apps:startup_fails",
        top='lifespan = "on"',
    )
    with running(["-m", "appserver", "serve", str(config)]) as proc:
        result = proc.wait(30)
    assert result.returncode == 3, result.output
    assert "database unreachable" in result.output
    assert result.output.count("Started worker") == 2, "the supervisor restarted in a loop"


def test_an_invalid_config_on_sighup_changes_no_worker(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path / "app.toml", port)
    with supervisor(config) as proc:
        before = set(ready_pids(proc))
        config.write_text(config.read_text() + '\n[limits]\nconcurrency = "many"\n')
        proc.signal(signal.SIGHUP)
        wait_for_output(proc, "Reload refused: 1 problem; the running workers are untouched")
        assert 'limits.concurrency = "many": expected an integer >= 1' in proc.output()
        time.sleep(0.5)
        assert set(ready_pids(proc)) == before
        assert pids_serving(port, 2) == before
        drained(proc)


def test_a_valid_config_on_sighup_rolls_every_worker(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path / "app.toml", port)
    with supervisor(config) as proc:
        before = set(ready_pids(proc))
        config.write_text(config.read_text() + '\n[headers.custom]\nx-release = "2"\n')
        proc.signal(signal.SIGHUP)
        wait_for_output(proc, "Reloading: configuration valid, rolling 2 workers")
        wait_for_output(proc, "Reload complete")
        after = pids_serving(port, 2)
        assert len(after) == 2 and not after & before
        assert httpx.get(f"http://127.0.0.1:{port}/").headers["x-release"] == "2"
        assert not any(alive(pid) for pid in before)
        drained(proc)


@dataclass
class Load:
    """Keep-alive clients on 127.0.0.1 counting every request that fails, including one that
    finds its keep-alive connection closed under it (no retries)."""

    port: int
    clients: int = 20
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _client(self) -> None:
        url = f"http://127.0.0.1:{self.port}/"
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    response = client.get(url)
                except httpx.TransportError as exc:
                    self._failed(repr(exc))
                    continue
                if response.status_code != 200:
                    self._failed(f"status {response.status_code}")
                    continue
                with self._lock:
                    self.ok += 1

    def _failed(self, what: str) -> None:
        # With the wall-clock time, to find the moment in the server's log.
        with self._lock:
            self.failures.append(f"{datetime.now().time().isoformat('milliseconds')} {what}")

    @contextlib.contextmanager
    def running(self) -> Iterator[Load]:
        threads = [threading.Thread(target=self._client) for _ in range(self.clients)]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(20)


def test_zero_failed_requests_through_reload_recycling_and_scaling(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "app.toml",
        port,
        """
        [limits]
        max_requests = 400
        max_requests_jitter = 100
        """,
        healthcheck=5,  # a loaded 2-core machine must not look like a hung worker here
    )
    load = Load(port)
    with supervisor(config) as proc:
        with load.running():
            time.sleep(1)
            proc.signal(signal.SIGHUP)
            wait_for_output(proc, "Reload complete", timeout=30)
            proc.signal(signal.SIGTTIN)
            deadline = time.monotonic() + 15
            while len([p for p in ready_pids(proc) if alive(p)]) < 3:
                assert time.monotonic() < deadline, proc.output()
                time.sleep(0.05)
            proc.signal(signal.SIGTTOU)
            wait_for_output(proc, "Stopping worker", timeout=15)
            # How soon a worker reaches its limit depends on how fast this machine serves:
            # the load runs on until one was recycled (a busy CI machine takes longer).
            deadline = time.monotonic() + 30
            while load.ok <= 1000 or "reached limit_max_requests" not in proc.output():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            time.sleep(0.5)
        output = drained(proc)
    assert "reached limit_max_requests" in output, "no worker was recycled"
    assert load.failures == [], (load.failures[:5], load.ok, output)
    assert load.ok > 1000
    print(f"served {load.ok} requests, none failed")


def test_sighup_with_changed_listeners_binds_the_new_ones_and_keeps_the_same(
    tmp_path: Path,
) -> None:
    port, added = free_port(), free_port()
    config = write_config(tmp_path / "app.toml", port)
    with supervisor(config) as proc:
        before = set(ready_pids(proc))
        text = config.read_text().replace(
            f"[server]\nport = {port}\n",
            f'[[listeners]]\nbind = "127.0.0.1:{port}"\n\n[[listeners]]\nbind = "127.0.0.1:{added}"\n',
        )
        config.write_text(text)
        proc.signal(signal.SIGHUP)
        wait_for_output(proc, "Reloading: listeners changed, sockets bound again")
        wait_for_output(proc, "Reload complete")
        on_old, on_new = pids_serving(port, 2), pids_serving(added, 2)
        assert on_old == on_new and len(on_old) == 2 and not on_old & before
        drained(proc)


def test_run_with_workers_from_python(tmp_path: Path) -> None:
    port = free_port()
    code = (
        "import appserver\n"
        f"appserver.run('tests.processes.apps:app', port={port}, workers=2, access_log=False)\n"
    )
    with running(["-c", code]) as proc:
        deadline = time.monotonic() + 20
        while len(ready_pids(proc)) < 2:
            assert proc.alive() and time.monotonic() < deadline, proc.output()
            time.sleep(0.05)
        assert len(pids_serving(port, 2)) == 2
        drained(proc)


def test_a_new_release_that_cannot_start_aborts_the_roll(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path / "app.toml", port)
    with supervisor(config) as proc:
        before = set(ready_pids(proc))
        config.write_text(
            config.read_text().replace("tests.processes.apps:app", "tests.processes.apps:nosuch")
        )
        proc.signal(signal.SIGHUP)
        wait_for_output(proc, "Reload aborted")
        assert pids_serving(port, 2) == before
        assert proc.alive()
        drained(proc)


def test_a_worker_never_ready_is_killed_and_not_restarted_in_a_loop(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "app.toml",
        free_port(),
        app="tests.processes.apps:slow_start",
        top='lifespan = "on"',
    )
    config.write_text(config.read_text() + "start_timeout = 1\n")
    with running(["-m", "appserver", "serve", str(config)]) as proc:
        result = proc.wait(30)
    assert result.returncode == 3, result.output
    assert "not ready within 1s: killed" in result.output
    assert result.output.count("Started worker") == 2, result.output


def test_a_second_sigterm_forces_the_supervisor_out_with_status_1(tmp_path: Path) -> None:
    port = free_port()

    def slow_request() -> None:
        with contextlib.suppress(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/slow", timeout=30)

    with supervisor(write_config(tmp_path / "app.toml", port)) as proc:
        workers = ready_pids(proc)
        threading.Thread(target=slow_request, daemon=True).start()
        wait_for_output(proc, "slow request begun")
        proc.signal(signal.SIGTERM)
        wait_for_output(proc, "Shutting down: draining 2 worker(s)")
        time.sleep(0.5)
        assert proc.alive()  # the slow request holds the drain
        proc.signal(signal.SIGTERM)
        result = proc.wait(20)
    assert result.returncode == 1, result.output
    assert "Forced exit" in result.output
    assert not any(alive(pid) for pid in workers)
