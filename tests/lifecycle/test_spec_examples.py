"""The spec's usage examples (examples/spec_*.py), each run as written in a real subprocess.

Each example binds port 8000, so they run one after another, and are skipped when something
else already listens there. The test waits until the example answers a GET, sends it a signal
and checks how it ends.

What ends how, and why:

- Examples that call ``run()`` or ``serve()`` (1, 2, 3, 9) install appserver's signal handlers:
  SIGINT or SIGTERM drains and the process exits with status 0.
- Example 7 installs its own handlers, which set ``should_exit``: the same clean drain, status 0.
- Examples 4, 5, 6 and 8 call ``startup()`` themselves, so no appserver handler is installed
  (as in uvicorn, only ``serve()`` captures signals). SIGINT then does what ``asyncio.run()``
  does with Ctrl-C: it cancels the main task. The examples' ``finally:`` blocks still run
  ``server.shutdown()`` (a drain), then asyncio.run raises KeyboardInterrupt and Python ends the
  process by SIGINT (status -2; 130 in a shell). Example 8 catches KeyboardInterrupt around
  ``main_loop()``, but under asyncio.run that call sees a cancellation instead, so its shutdown
  stage is skipped. SIGTERM, which nothing handles there, kills them at once (status -15).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

import pytest

from .procs import EXAMPLES, port_busy, running, wait_until_serving

PORT = 8000
HELLO = "Hello, World!"
KEYBOARD_INTERRUPT = -signal.SIGINT
KILLED_BY_SIGTERM = -signal.SIGTERM

pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True)
class Case:
    example: str
    sig: signal.Signals
    returncode: int
    body: str = HELLO
    printed: tuple[str, ...] = ()  # must appear, in this order
    not_printed: tuple[str, ...] = ()
    traceback: bool = False

    def __str__(self) -> str:
        return f"{self.example.removesuffix('.py')}-{self.sig.name}"


DRAINED = ("Shutting down", "Finished server process")
STARTUP_DRAINED = ("Shutting down", "Application shutdown complete")

CASES = [
    Case("spec_01_basic_run.py", signal.SIGINT, 0, printed=DRAINED),
    Case("spec_01_basic_run.py", signal.SIGTERM, 0, printed=DRAINED),
    Case("spec_02_serve.py", signal.SIGINT, 0, printed=DRAINED),
    Case("spec_02_serve.py", signal.SIGTERM, 0, printed=DRAINED),
    Case(
        "spec_03_prebound_socket.py",
        signal.SIGTERM,
        0,
        body="Hello from myapp!",
        printed=("Listening on http://127.0.0.1:8000", *DRAINED),
    ),
    Case(
        "spec_03_prebound_socket.py",
        signal.SIGINT,
        0,
        body="Hello from myapp!",
        printed=DRAINED,
    ),
    Case(
        "spec_04_manual_lifecycle.py",
        signal.SIGINT,
        KEYBOARD_INTERRUPT,
        printed=(*STARTUP_DRAINED, "KeyboardInterrupt"),
        traceback=True,
    ),
    Case(
        "spec_04_manual_lifecycle.py",
        signal.SIGTERM,
        KILLED_BY_SIGTERM,
        not_printed=("Shutting down",),
    ),
    # 60 s of serving, cut short by the signal.
    Case(
        "spec_05_run_for_time.py",
        signal.SIGINT,
        KEYBOARD_INTERRUPT,
        printed=(*STARTUP_DRAINED, "KeyboardInterrupt"),
        traceback=True,
    ),
    Case(
        "spec_06_monitoring.py",
        signal.SIGINT,
        KEYBOARD_INTERRUPT,
        printed=(
            "Active connections: ",
            "Total requests: ",
            "Background tasks: ",
            *STARTUP_DRAINED,
            "KeyboardInterrupt",
        ),
        traceback=True,
    ),
    Case(
        "spec_07_custom_signals.py",
        signal.SIGINT,
        0,
        printed=("Received signal 2, shutting down...", *STARTUP_DRAINED),
    ),
    Case(
        "spec_07_custom_signals.py",
        signal.SIGTERM,
        0,
        printed=("Received signal 15, shutting down...", *STARTUP_DRAINED),
    ),
    Case(
        "spec_08_staged_startup.py",
        signal.SIGINT,
        KEYBOARD_INTERRUPT,
        printed=(
            "Loading configuration...",
            "Starting server...",
            "Server started on 127.0.0.1:8000",
            "Active connections: 0",
            "KeyboardInterrupt",
        ),
        # The example's `except KeyboardInterrupt` never sees one under asyncio.run.
        not_printed=("Interrupted by user", "Shutting down server...", "Server stopped"),
        traceback=True,
    ),
    Case("spec_09_limit_concurrency.py", signal.SIGTERM, 0, printed=DRAINED),
    Case("spec_09_max_requests.py", signal.SIGTERM, 0, printed=DRAINED),
    Case("spec_09_max_requests.py", signal.SIGINT, 0, printed=DRAINED),
]


def test_every_example_is_covered() -> None:
    files = {path.name for path in EXAMPLES.glob("spec_*.py")}
    assert files == {case.example for case in CASES}
    assert len(files) == 10  # nine examples; the ninth has two configurations


@pytest.mark.parametrize("case", CASES, ids=str)
def test_example(case: Case) -> None:
    if port_busy(PORT):
        pytest.skip(f"port {PORT} is already in use; the spec examples bind it")
    # cwd examples/: example 3 imports "myapp:app" from there.
    with running([str(EXAMPLES / case.example)], cwd=EXAMPLES) as proc:
        try:
            response = wait_until_serving(proc, PORT)
        except AssertionError:
            _skip_if_port_taken_meanwhile(proc.output())
            raise
        _skip_if_port_taken_meanwhile(proc.output())
        assert response.status_code == 200
        assert response.text == case.body
        proc.signal(case.sig)
        result = proc.wait()
    output = result.output
    assert result.returncode == case.returncode, output
    positions = [output.find(text) for text in case.printed]
    assert all(p >= 0 for p in positions), f"missing one of {case.printed}:\n{output}"
    assert positions == sorted(positions), output
    for text in case.not_printed:
        assert text not in output, output
    assert ("Traceback" in output) == case.traceback, output
    assert "ERROR" not in output, output


def _skip_if_port_taken_meanwhile(output: str) -> None:
    # Another program may bind the port between the check above and the example's bind.
    if "Address already in use" in output:
        pytest.skip(f"port {PORT} was taken by another program while the example started")
