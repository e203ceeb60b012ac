"""The supervisor: N worker processes on sockets bound once, kept alive, rolled without a drop.

The supervisor validates the configuration, binds every listener once (and takes systemd's
sockets), then forks workers that inherit the sockets: no port race, no SO_REUSEPORT needed.
It never imports the app; each worker does, in ``Config.load()``, after the fork.

Each worker has a socketpair to the supervisor, one byte per message:

    worker -> supervisor   R  ready (lifespan startup done, accepting)
                           P  pong (the worker's event loop answered a ping)
                           M  limit_max_requests reached: start my replacement, then stop me
    supervisor -> worker   P  ping

The supervisor's loop is a plain ``selectors`` loop (no asyncio): signals arrive through
``signal.set_wakeup_fd``, children through SIGCHLD and ``waitpid``.

Signals: SIGTERM/SIGINT drain every worker (a second one forces); SIGHUP re-reads the
configuration from the same sources and, only if it is valid, rolls the workers one by one
(start a new one, wait until it is ready, drain an old one); SIGTTIN/SIGTTOU add or remove one.
"""

from __future__ import annotations

import contextlib
import enum
import fnmatch
import logging
import os
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from appserver.errors import AppServerError, ConfigError, StartupError
from appserver.ops.metrics import Metrics, SnapshotDirectory
from appserver.server import STARTUP_FAILURE, Server, bind_listeners, configure_logging

if TYPE_CHECKING:
    from appserver.config.model import Config

logger = logging.getLogger("appserver.error")

READY, PONG, MAX_REQUESTS, PING = b"R", b"P", b"M", b"P"
# Written to the wakeup socket by the file watcher (reload): not a signal number.
FILES_CHANGED = 255
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)
_HANDLED = frozenset((*SIGNALS, signal.SIGCHLD))  # every signal the supervisor has a handler for


class WorkerState(enum.Enum):
    STARTING = "starting"  # forked, not ready yet
    READY = "ready"  # serving
    RETIRING = "retiring"  # asked for a replacement (limit_max_requests)
    STOPPING = "stopping"  # sent SIGTERM, draining


@dataclass
class Worker:
    pid: int
    control: socket.socket
    config: Config
    started: float
    state: WorkerState = WorkerState.STARTING
    last_seen: float = 0.0
    ping_sent: float | None = None
    replaces: Worker | None = None  # the worker this one will take over from
    start_timed_out: bool = False  # killed for not being ready within timeout_worker_start
    served: bool = False  # it became ready at some point


@dataclass
class Roll:
    """A rolling restart under way: the workers still to replace, and the new config."""

    config: Config
    old: list[Worker] = field(default_factory=list)
    pending: Worker | None = None
    replaced: list[Worker] = field(default_factory=list)  # stopped by the roll, draining


def receive(control: socket.socket) -> bytes | None:
    """The messages waiting on a control socket; b"" once the other end is gone, None when
    nothing has arrived (a spurious wakeup)."""
    try:
        return control.recv(64)
    except BlockingIOError:
        return None
    except OSError:
        return b""


class WorkerLink:
    """The worker's end of its socketpair (used by Server in a worker process)."""

    def __init__(self, control: socket.socket) -> None:
        self.control = control
        control.setblocking(False)

    def ready(self, server: Server) -> None:
        import asyncio

        loop = asyncio.get_running_loop()

        def answer() -> None:
            data = receive(self.control)
            if data is None:
                return
            if not data:
                # The supervisor is gone: nobody will restart or stop us; drain and exit.
                loop.remove_reader(self.control.fileno())
                server.should_exit = True
                return
            if PING in data:
                self._send(PONG)

        loop.add_reader(self.control.fileno(), answer)
        self._send(READY)

    def max_requests_reached(self, limit: int) -> None:
        logger.info("Worker [%d] reached limit_max_requests (%d)", os.getpid(), limit)
        self._send(MAX_REQUESTS)

    def _send(self, message: bytes) -> None:
        with contextlib.suppress(OSError):
            self.control.send(message)


class Supervisor:
    def __init__(
        self,
        config: Config,
        reread: Callable[[], Config] | None = None,
        watch_files: list[str] | None = None,
    ) -> None:
        """``reread`` builds the configuration again from its sources (SIGHUP); without it,
        SIGHUP rolls the workers on the same configuration. With ``config.reload``, changes
        to the watched files (and to ``watch_files``: the config and .env files) roll them."""
        self.config = config
        self.reread = reread
        self.watch_files = [os.path.abspath(path) for path in watch_files or []]
        self._stop_watching = threading.Event()
        self.target = config.workers or 1
        self.workers: dict[int, Worker] = {}
        self.listeners: list[Any] = []
        self.should_exit = False
        self.force_exit = False
        self.exit_status = 0
        # metrics.path: the workers leave their counters here for each other (ops/metrics.py);
        # the supervisor keeps the worker restarts and the counts of workers that exited.
        self.metrics: Metrics | None = None
        self.snapshots: SnapshotDirectory | None = None
        self.roll: Roll | None = None
        self._selector = selectors.DefaultSelector()
        self._wakeup_r, self._wakeup_w = socket.socketpair()

    # --- entry point -------------------------------------------------------------------------
    def run(self) -> None:
        """Bind, start the workers, supervise until stopped; SystemExit with the status."""
        configure_logging(self.config)
        try:
            self.listeners = bind_listeners(self.config)
        except (StartupError, OSError) as exc:
            logger.error("%s", exc)
            raise SystemExit(STARTUP_FAILURE) from None
        if self.config.reload:
            try:
                import watchfiles  # noqa: F401
            except ImportError:
                logger.error("reload needs watchfiles: pip install 'appserver[reload]'")
                raise SystemExit(STARTUP_FAILURE) from None
        logger.info("Started supervisor process [%d]", os.getpid())
        for listener in self.listeners:
            logger.info("Listening on %s (Press CTRL+C to quit)", _describe(listener, self.config))
        previous = self._install_signals()
        watcher = self._start_watching() if self.config.reload else None
        if self.config.metrics_route is not None:
            self.metrics = Metrics()
            self.snapshots = SnapshotDirectory(tempfile.mkdtemp(prefix="appserver-metrics-"))
            self.snapshots.write("supervisor", self.metrics.snapshot())
        try:
            for _ in range(self.target):
                self._spawn(self.config)
            self._loop()
        finally:
            self._stop_watching.set()
            if watcher is not None:
                watcher.join(5)
            self._restore_signals(previous)
            for listener in self.listeners:
                listener.close()
            if self.snapshots is not None:
                shutil.rmtree(self.snapshots.path, ignore_errors=True)
        logger.info("Finished supervisor process [%d]", os.getpid())
        if self.exit_status:
            raise SystemExit(self.exit_status)

    # --- the loop -------------------------------------------------------------------------------
    def _loop(self) -> None:
        self._selector.register(self._wakeup_r, selectors.EVENT_READ, None)
        while self.workers or not self.should_exit:
            timeout = 0.25
            for key, _ in self._selector.select(timeout):
                if key.data is None:
                    self._on_signals()
                else:
                    self._on_message(key.data)
            self._reap()
            if self.should_exit:
                continue
            self._check_health()
            self._step_roll()
            self._keep_count()

    def _on_signals(self) -> None:
        try:
            data = self._wakeup_r.recv(64)
        except BlockingIOError:
            return
        for number in data:
            if number == signal.SIGCHLD:
                continue  # reaped below
            if number in (signal.SIGTERM, signal.SIGINT):
                self._stop(force=self.should_exit)
            elif number in (signal.SIGHUP, FILES_CHANGED) and not self.should_exit:
                self._reload()
            elif number == signal.SIGTTIN and not self.should_exit:
                self.target += 1
                logger.info("SIGTTIN: %d workers", self.target)
            elif number == signal.SIGTTOU and not self.should_exit and self.target > 1:
                self.target -= 1
                logger.info("SIGTTOU: %d workers", self.target)

    def _on_message(self, worker: Worker) -> None:
        data = receive(worker.control)
        if data is None:
            return
        if not data:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(worker.control)
            return
        now = time.monotonic()
        worker.last_seen = now
        if READY in data and worker.state is WorkerState.STARTING:
            worker.state = WorkerState.READY
            worker.served = True
            worker.ping_sent = None
            logger.info("Worker [%d] ready", worker.pid)
            if worker.replaces is not None:
                self._retire(worker.replaces)
                worker.replaces = None
        if PONG in data:
            worker.ping_sent = None
        if MAX_REQUESTS in data and worker.state is WorkerState.READY:
            worker.state = WorkerState.RETIRING
            self._spawn(worker.config, replaces=worker)

    # --- workers --------------------------------------------------------------------------------
    def _spawn(self, config: Config, replaces: Worker | None = None) -> Worker:
        ours, theirs = socket.socketpair()
        if self.snapshots is not None:
            config._metrics_dir = str(self.snapshots.path)
        # Until the child has reset them, it has our signal handlers and our wakeup fd: a
        # SIGTERM sent to it in that moment (a stop while it starts) would be written to our
        # wakeup socket and read here as a second signal, a forced exit. So signals stay
        # blocked across the fork; the child unblocks them once they are its own.
        signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)
            raise
        if pid == 0:  # the worker
            ours.close()
            self._become_worker(config, theirs)  # never returns
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)
        theirs.close()
        ours.setblocking(False)
        worker = Worker(pid, ours, config, time.monotonic(), replaces=replaces)
        worker.last_seen = worker.started
        self.workers[pid] = worker
        self._selector.register(ours, selectors.EVENT_READ, worker)
        logger.info("Started worker [%d]", pid)
        return worker

    def _become_worker(self, config: Config, control: socket.socket) -> None:
        status = 1
        try:
            # Ctrl+C in a terminal signals the whole process group: the supervisor alone must
            # hear it, and tell the workers, or each would count it as a first signal twice.
            os.setpgid(0, 0)
            signal.set_wakeup_fd(-1)
            for number in (*SIGNALS, signal.SIGCHLD):
                signal.signal(number, signal.SIG_DFL)
            # Blocked since before the fork (see _spawn): one that came meanwhile now gets the
            # default action, as a worker that has not started serving should.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)
            self._selector.close()
            self._wakeup_r.close()
            self._wakeup_w.close()
            for other in self.workers.values():
                other.control.close()
            status = run_worker(config, control, self.listeners)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            logger.exception("Worker [%d] failed", os.getpid())
            status = 1
        finally:
            logging.shutdown()
            os._exit(status)

    def _retire(self, worker: Worker) -> None:
        if worker.state is not WorkerState.STOPPING:
            worker.state = WorkerState.STOPPING
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(worker.control)
            worker.control.close()
            if self.snapshots is not None:
                self.snapshots.retire(f"worker-{pid}")
            self._worker_exited(worker, status)

    def _worker_exited(self, worker: Worker, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        how = f"signal {-code}" if code < 0 else f"status {code}"
        if worker.state is WorkerState.STOPPING or self.should_exit:
            logger.info("Worker [%d] stopped (%s)", worker.pid, how)
            # A worker still starting when told to stop dies of the SIGTERM before it has a
            # handler for it: it had nothing to drain.
            unclean = code != 0 and (worker.served or code != -signal.SIGTERM)
            if self.should_exit and unclean and not self.exit_status:
                self.exit_status = 1
            return
        if code == STARTUP_FAILURE or worker.start_timed_out:
            logger.error("Worker [%d] failed to start (%s): stopping", worker.pid, how)
            roll = self.roll
            if roll is not None and roll.pending is worker:
                logger.error("Reload aborted: the new worker did not start; old workers serve on")
                self.roll = None
                return
            self.exit_status = STARTUP_FAILURE
            self._stop(force=False)
            return
        if self.roll is not None and self.roll.pending is worker:
            logger.error("Reload aborted: the new worker exited (%s); old workers serve on", how)
            self.roll = None
            return
        logger.warning("Worker [%d] died (%s), restarting", worker.pid, how)
        if self.metrics is not None and self.snapshots is not None:
            self.metrics.worker_restarts += 1
            self.snapshots.write("supervisor", self.metrics.snapshot())
        # _keep_count starts the replacement.

    def _keep_count(self) -> None:
        if self.roll is not None:
            return  # the roll starts and stops workers itself
        # A replacement that is starting takes the place of the retiring worker it replaces.
        serving = [
            w for w in self.workers.values() if w.state in (WorkerState.STARTING, WorkerState.READY)
        ]
        for _ in range(self.target - len(serving)):
            self._spawn(self.config)
        extra = len(serving) - self.target
        if extra > 0:
            for worker in sorted(serving, key=lambda w: w.started)[:extra]:
                logger.info("Stopping worker [%d] (%d wanted)", worker.pid, self.target)
                self._retire(worker)

    def _check_health(self) -> None:
        now = time.monotonic()
        timeout = self.config.timeout_worker_healthcheck
        for worker in list(self.workers.values()):
            if worker.state is WorkerState.STARTING:
                if now - worker.started > self.config.timeout_worker_start:
                    logger.error(
                        "Worker [%d] not ready within %gs: killed",
                        worker.pid,
                        self.config.timeout_worker_start,
                    )
                    worker.start_timed_out = True
                    self._kill(worker)
                continue
            if worker.state is WorkerState.STOPPING:
                continue
            if worker.ping_sent is not None:
                if now - worker.ping_sent > timeout:
                    logger.error(
                        "Worker [%d] did not answer for %gs: killed, restarting",
                        worker.pid,
                        timeout,
                    )
                    self._kill(worker)
            elif now - worker.last_seen > timeout / 2:
                worker.ping_sent = now
                with contextlib.suppress(OSError):
                    worker.control.send(PING)

    def _kill(self, worker: Worker) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGKILL)

    # --- stopping -------------------------------------------------------------------------------
    def _stop(self, force: bool) -> None:
        if force:
            logger.warning("Forced exit: killing %d worker(s)", len(self.workers))
            self.force_exit = True
            self.exit_status = self.exit_status or 1
            for worker in self.workers.values():
                self._kill(worker)
            return
        if not self.should_exit:
            logger.info("Shutting down: draining %d worker(s)", len(self.workers))
        self.should_exit = True
        self.roll = None
        for worker in self.workers.values():
            self._retire(worker)

    # --- reloading ------------------------------------------------------------------------------
    def _reload(self) -> None:
        if self.reread is None:
            new = self.config
        else:
            try:
                new = self.reread()
            except ConfigError as exc:
                logger.error(
                    "Reload refused: %d problem%s; the running workers are untouched",
                    len(exc.errors),
                    "s" * (len(exc.errors) != 1),
                )
                for error in exc.errors:
                    logger.error("  %s", error)
                return
        if new.listener_configs() != self.config.listener_configs():
            try:
                listeners = bind_listeners(new, reuse=self.listeners)
            except (StartupError, OSError) as exc:
                logger.error("Reload refused: the new listeners cannot be bound: %s", exc)
                return
            logger.info("Reloading: listeners changed, sockets bound again")
            # Old workers keep their own copies of the old sockets until they drain.
            for listener in self.listeners:
                if listener not in listeners:
                    listener.close()
            self.listeners = listeners
        ready = [w for w in self.workers.values() if w.state is not WorkerState.STOPPING]
        logger.info("Reloading: configuration valid, rolling %d workers", len(ready))
        self.config = new
        self.target = new.workers or self.target
        self.roll = Roll(new, old=sorted(ready, key=lambda w: w.started))

    def _step_roll(self) -> None:
        roll = self.roll
        if roll is None:
            return
        pending = roll.pending
        if pending is not None:
            if pending.pid not in self.workers:
                self.roll = None  # exited: _worker_exited said why
                return
            if pending.state is WorkerState.STARTING:
                return
            roll.pending = None  # ready: it retired its predecessor
        roll.old = [w for w in roll.old if w.pid in self.workers]
        if not roll.old:
            # Complete once the replaced workers are gone: until they have drained, they may
            # still accept a connection or two.
            if any(w.pid in self.workers for w in roll.replaced):
                return
            logger.info("Reload complete: %d workers on the new configuration", len(self.workers))
            self.roll = None
            return
        predecessor = roll.old.pop(0)
        roll.replaced.append(predecessor)
        roll.pending = self._spawn(roll.config, replaces=predecessor)

    # --- reload: watching files ------------------------------------------------------------------
    def _start_watching(self) -> threading.Thread:
        dirs = [os.path.abspath(d) for d in self.config.reload_dirs] or [os.getcwd()]
        paths = sorted({*dirs, *(os.path.dirname(f) for f in self.watch_files)})
        logger.info("Will watch for changes in these directories: %s", dirs)
        thread = threading.Thread(
            target=self._watch, args=(paths,), name="appserver-reload", daemon=True
        )
        thread.start()
        return thread

    def _watch(self, paths: list[str]) -> None:
        import watchfiles

        delay_ms = int(self.config.reload_delay * 1000)
        for changes in watchfiles.watch(
            *paths,
            watch_filter=self._wanted,
            debounce=max(delay_ms, 1),
            step=min(50, max(delay_ms, 1)),
            stop_event=self._stop_watching,
            raise_interrupt=False,
        ):
            names = sorted({os.path.relpath(path) for _, path in changes})
            logger.warning("Changes detected in %s: reloading", ", ".join(names))
            with contextlib.suppress(OSError):
                self._wakeup_w.send(bytes([FILES_CHANGED]))

    def _wanted(self, _change: Any, path: str) -> bool:
        if path in self.watch_files:
            return True
        parts = path.split(os.sep)
        includes, excludes = self.config.reload_patterns
        if any(fnmatch.fnmatch(part, pattern) for part in parts for pattern in excludes):
            return False
        name = parts[-1]
        return any(fnmatch.fnmatch(name, pattern) for pattern in includes)

    # --- signals --------------------------------------------------------------------------------
    def _install_signals(self) -> dict[int, Any]:
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        signal.set_wakeup_fd(self._wakeup_w.fileno(), warn_on_full_buffer=False)
        previous: dict[int, Any] = {}
        for number in (*SIGNALS, signal.SIGCHLD):
            # A handler that does nothing: the wakeup fd carries the signal number.
            previous[number] = signal.signal(number, lambda *_: None)
        return previous

    def _restore_signals(self, previous: dict[int, Any]) -> None:
        signal.set_wakeup_fd(-1)
        for number, handler in previous.items():
            signal.signal(number, handler)


def run_worker(config: Config, control: socket.socket, listeners: list[Any]) -> int:
    """The body of a worker process: load the app, serve on the inherited sockets."""
    config._sockets_inherited = True
    server = Server(config)
    server.inherited = [(listener.sock, listener.index) for listener in listeners]
    server.worker_link = WorkerLink(control)
    try:
        server.run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        # Any failure before serving is a startup failure: the supervisor must not loop.
        return STARTUP_FAILURE if not server.started and code else code
    return 0


def _describe(listener: Any, config: Config) -> str:
    described: str = listener.describe()
    index = listener.index
    configs = config.listener_configs()
    if config.listeners is None:
        if config.is_ssl:
            described = described.replace("http://", "https://", 1)
    elif configs[index].tls is not None:
        described = described.replace("http://", "https://", 1)
    return described


def run_supervised(
    config: Config,
    reread: Callable[[], Config] | None = None,
    watch_files: list[str] | None = None,
) -> None:
    """``workers`` or ``reload`` set: supervise worker processes (see the module docstring)."""
    if sys.platform == "win32":  # pragma: no cover
        raise AppServerError("workers and reload need fork(): not available on Windows")
    Supervisor(config, reread, watch_files).run()
