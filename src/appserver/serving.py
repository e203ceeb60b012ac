"""``appserver serve`` hands a validated configuration to a fresh interpreter that only serves.

Validating a configuration needs pydantic, the CLI needs typer and click; serving needs none of
them, and together they are about a third of an idle server's memory (43 MiB with them, 28 MiB
without, here). So once ``appserver serve`` has validated everything it can before binding, it
pickles a :class:`~appserver.config.settled.SettledConfig` into a memfd (an unlinked temporary
file where there is none) and runs its own command line again, the same way (``execve``: the same
process id, command line and process name, so systemd, ``ps``, ``pgrep appserver`` or a
supervisor see the one process as before), with the descriptor's number in
``_APPSERVER_HANDOFF_FD``. The entry point (``appserver.__main__``) finds it there, before
importing the CLI, and serves the handoff. The interpreter's flags (``-u``, ``-X``, ``-W``,
``-O``: ``sys.orig_argv``), the environment, the working directory, ``sys.path`` and inherited
sockets (``fd``, systemd's, which are not close-on-exec) carry over.

SIGHUP rereads the same sources as before (the file, the .env file, the environment, the same
flags), which imports pydantic in the serving process from then on; an invalid configuration
still changes nothing.

It serves in place instead, as before, when it was not started as ``python -m appserver`` or as
the ``appserver`` script (a program calling ``appserver.cli.main()`` keeps its state: threads,
atexit handlers, monkeypatches; ``-c``, a REPL or a launcher such as ``python -m cProfile`` would
run more than appserver again), on a system without ``execve`` semantics (Windows) or in a frozen
bundle, under a tracer, profiler or sys.monitoring tool (a debugger, coverage) that would lose
the process, when no descriptor can be made, or when the configuration cannot be settled (a
setting that holds a Python object that does not pickle).
Worker processes (``workers``, ``reload``) are forked by the supervisor, which keeps the
validated Config.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

if TYPE_CHECKING:
    from appserver.config.model import Config
    from appserver.config.settled import SettledConfig

# Not APPSERVER_*: that prefix is the settings' (and `appserver check` reports unknown ones).
HANDOFF_VARIABLE: Final = "_APPSERVER_HANDOFF_FD"

MFD_NOEXEC_SEAL: Final = 0x0008  # linux/memfd.h; not in the os module on 3.11

# Set by the entry point (``appserver.__main__``) and only there, so that a program that calls the
# CLI itself is never replaced.
replaceable = False


class Sources(NamedTuple):
    """What ``appserver serve`` read the configuration from: SIGHUP reads it again."""

    config: Path | None
    env_file: Path | None
    flags: dict[str, Any]
    assignments: list[str]

    def reread(self) -> Config:
        """SIGHUP: a validated Config from the same sources again (``appserver.cli.reread``;
        imported only now, so a serving process loads the CLI at its first SIGHUP)."""
        from appserver.cli import reread

        return reread(*self)


class Handoff(NamedTuple):
    config: SettledConfig
    sources: Sources
    path: list[str]


def exec_serving(config: Config, sources: Sources) -> None:
    """Replace this process with one serving ``config`` (see the module docstring).

    Returns only when it does not replace it: the caller then serves in this process.
    """
    if not replaceable or os.name != "posix" or getattr(sys, "frozen", False) or _watched():
        return
    argv = same_command()
    if argv is None:
        return
    payload = handoff_payload(config, sources)
    if payload is None:
        return
    fd = _handoff_descriptor(payload)
    if fd is None:
        return
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()  # what was said before the exec must not be lost with the buffers
    try:
        os.execve(argv[0], argv, {**os.environ, HANDOFF_VARIABLE: str(fd)})
    except OSError:  # pragma: no cover - the program that runs us went away
        os.close(fd)


def handoff_payload(config: Config, sources: Sources) -> bytes | None:
    """``config`` settled and pickled with its sources and ``sys.path``, or None when it
    cannot be: then it is served in place, where it fails (or not) as it always did."""
    from appserver.config.settled import SettledConfig

    try:
        handoff = Handoff(SettledConfig(config), sources, list(sys.path))
        return pickle.dumps(handoff, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # any setting that will not settle or pickle: serve here
        return None


def _handoff_descriptor(payload: bytes) -> int | None:
    """An inheritable descriptor, 3 or above, positioned at the start of ``payload``, or None.

    A memfd on Linux, so a read-only root filesystem (a hardened container) is no obstacle;
    elsewhere an unlinked temporary file. Nothing is left behind either way."""
    import fcntl
    import tempfile

    first = None
    if hasattr(os, "memfd_create"):
        # MFD_NOEXEC_SEAL (Linux 6.3): where vm.memfd_noexec refuses executable memfds; older
        # kernels refuse the flag itself (EINVAL), then without it.
        for flags in (MFD_NOEXEC_SEAL, 0):
            try:
                first = os.memfd_create("appserver-handoff", flags)
                break
            except OSError:
                continue
    if first is None:  # no memfd (macOS, the BSDs, a seccomp policy): an unlinked file
        try:
            first, name = tempfile.mkstemp(prefix="appserver-handoff-")
            os.unlink(name)
        except OSError:
            return None
    try:
        # Above stdin, stdout and stderr even when one of them is closed (F_DUPFD: not
        # close-on-exec, so the new image inherits it).
        fd = fcntl.fcntl(first, fcntl.F_DUPFD, 3)
    except OSError:
        os.close(first)
        return None
    os.close(first)
    try:
        with open(fd, "wb", closefd=False) as file:
            file.write(payload)  # all of it (os.write may write part)
        os.lseek(fd, 0, os.SEEK_SET)  # the offset is shared: the new image reads from here
    except OSError:
        os.close(fd)
        return None
    return fd


def _watched() -> bool:
    """A tracer, a profiler or (3.12+) a sys.monitoring tool is attached: a debugger, coverage,
    cProfile. It would lose a replaced process."""
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return True
    monitoring = getattr(sys, "monitoring", None)
    return monitoring is not None and any(monitoring.get_tool(i) for i in range(6))


def same_command() -> list[str] | None:
    """This process's command line, to run again, when it is ``python [FLAGS] -m appserver ARGS``
    or ``python [FLAGS] .../appserver ARGS`` (the console script): the interpreter with the
    flags it was given, as typed (``sys.orig_argv``: ``-u``, ``-X``, ``-W``, ``-O``), or the
    console script itself when it was run by its name and its ``#!`` line names this interpreter
    alone, so that the process keeps its name (``ps``, ``pgrep appserver``). None for anything
    else (``-c``, a REPL, a launcher such as ``python -m cProfile``, a wrapper script): running
    that again would run more than appserver."""
    given, args = sys.orig_argv[1:], sys.argv[1:]
    index = 0
    while index < len(given) and given[index].startswith("-") and given[index] not in ("-", "-c"):
        if given[index] == "-m":
            break
        index += 2 if given[index] in ("-X", "-W") else 1
    program = given[index:]
    if program == ["-m", "appserver", *args]:
        return [sys.executable, *given]
    script = sys.argv[0]
    if program != [script, *args] or os.path.basename(script) != "appserver":
        return None
    if index == 0 and os.access(script, os.X_OK):
        try:
            with open(script, "rb") as file:
                shebang = file.readline(4096)
        except OSError:
            shebang = b""
        if shebang.strip() == b"#!" + os.fsencode(sys.executable):
            return list(sys.argv)
    return [sys.executable, *given]


def main() -> None:
    """Serve the handoff whose descriptor ``_APPSERVER_HANDOFF_FD`` names (the entry point
    calls this when the variable is set)."""
    number = os.environ.pop(HANDOFF_VARIABLE)  # not the app's, nor its children's
    try:
        if not number.isdigit():
            raise SystemExit(f"appserver: {HANDOFF_VARIABLE}={number!r} is not a descriptor")
        with os.fdopen(int(number), "rb") as file:
            handoff: Handoff = pickle.load(file)
        sys.path[:] = handoff.path
        from appserver.server import Server

        server = Server(handoff.config)
        server.reread = handoff.sources.reread  # SIGHUP: certificates reloaded in place
        server.run()
    except KeyboardInterrupt:  # Ctrl+C before the server's own handlers: as the CLI (typer)
        raise SystemExit(130) from None
