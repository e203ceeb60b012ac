"""``appserver serve`` hands a validated configuration to a fresh interpreter that only serves.

Validating a configuration needs pydantic, the CLI needs typer and click; serving needs none of
them, and together they are about a third of an idle server's memory (43 MiB with them, 28 MiB
without, here). So once ``appserver serve`` has validated everything it can before binding, it
pickles a :class:`~appserver.config.settled.SettledConfig` into a memfd (an unlinked temporary
file where there is none) and replaces itself (``execv``: the same process id, so systemd, a
supervisor or a ``kill`` still see the one process) with ``python -m appserver.serving FD``,
which unpickles it and runs the :class:`~appserver.server.Server`. The interpreter's flags
(``-X``, ``-W``, ``-O``), the environment, the working directory, ``sys.path`` and ``sys.argv``
are carried over; so are inherited sockets (``--fd``, systemd's), which are not close-on-exec.

SIGHUP rereads the same sources as before (the file, the .env file, the environment, the same
flags), which imports pydantic in the serving process from then on; an invalid configuration
still changes nothing.

It serves in place instead, as before, when the process cannot or should not be replaced: not a
POSIX system; a tracer or profiler is attached (a debugger, coverage) and would lose the process;
no descriptor can be made; or something in the configuration does not pickle. Worker processes
(``workers``, ``reload``) are started by the supervisor, which keeps the validated Config.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from appserver.config.model import Config
    from appserver.config.settled import SettledConfig


class Sources(NamedTuple):
    """What ``appserver serve`` read the configuration from: SIGHUP reads it again."""

    config: Path | None
    env_file: Path | None
    flags: dict[str, Any]
    assignments: list[str]


class Handoff(NamedTuple):
    config: SettledConfig
    sources: Sources
    path: list[str]
    argv: list[str]


def exec_serving(config: Config, sources: Sources) -> None:
    """Replace this process with one serving ``config`` (see the module docstring).

    Returns only when it does not replace it: the caller then serves in this process.
    """
    from appserver.config.settled import SettledConfig

    if os.name != "posix" or sys.gettrace() is not None or sys.getprofile() is not None:
        return
    handoff = Handoff(SettledConfig(config), sources, list(sys.path), list(sys.argv))
    try:
        payload = pickle.dumps(handoff, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        return  # an object from Python code (a callable, a class): serve here
    fd = _handoff_descriptor(payload)
    if fd is None:
        return
    # multiprocessing's spawn carries the interpreter's flags over the same way.
    flags: list[str] = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    argv = [sys.executable, *flags, "-m", "appserver.serving", str(fd), *sys.argv[1:]]
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # what was said before the exec must not be lost with the buffers
    try:
        os.execv(sys.executable, argv)
    except OSError:  # pragma: no cover - the interpreter that runs us went away
        os.close(fd)


def _handoff_descriptor(payload: bytes) -> int | None:
    """An inheritable descriptor positioned at the start of ``payload``, or None.

    A memfd on Linux, so a read-only root filesystem (a hardened container) is no obstacle;
    elsewhere an unlinked temporary file. Nothing is left behind either way."""
    try:
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("appserver-handoff", 0)  # no MFD_CLOEXEC: the new image reads it
        else:  # pragma: no cover - macOS, the BSDs
            fd, name = tempfile.mkstemp(prefix="appserver-handoff-")
            os.unlink(name)
    except OSError:
        return None
    try:
        with open(fd, "wb", closefd=False) as file:
            file.write(payload)  # all of it (os.write may write part)
        os.lseek(fd, 0, os.SEEK_SET)  # the offset is shared: the new image reads from here
        os.set_inheritable(fd, True)
    except OSError:
        os.close(fd)
        return None
    return fd


def _reread(sources: Sources) -> Config:
    from appserver.cli import reread

    return reread(*sources)


def main() -> None:
    """``python -m appserver.serving FD [ARGS]``: serve the handoff in file descriptor FD."""
    from appserver.server import Server

    if len(sys.argv) < 2 or not sys.argv[1].isdigit():
        raise SystemExit("python -m appserver.serving FD: started by appserver serve, not by hand")
    with os.fdopen(int(sys.argv[1]), "rb") as file:
        handoff: Handoff = pickle.load(file)
    sys.path[:] = handoff.path
    sys.argv[:] = handoff.argv
    server = Server(handoff.config)
    server.reread = lambda: _reread(handoff.sources)  # SIGHUP: certificates reloaded in place
    server.run()


if __name__ == "__main__":
    main()
