"""The subprocess harness itself: reading a child's output while it writes loses nothing."""

from __future__ import annotations

from tests.lifecycle.procs import running

LINES = 20000


def test_output_read_while_the_child_writes_keeps_every_line() -> None:
    # The child shares the log's file offset; reading it must not move where the child writes
    # (a seek did, and a supervisor's log line was overwritten: a flaky "never printed").
    code = f"import sys\nfor i in range({LINES}):\n    sys.stdout.write(f'line {{i}}\\n')\n"
    with running(["-c", code]) as proc:
        while proc.alive():
            proc.output()
        result = proc.wait()
    assert result.returncode == 0
    assert result.output.splitlines() == [f"line {i}" for i in range(LINES)]
