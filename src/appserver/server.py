"""``Server`` and ``ServerState``: the lifecycle API (see ../shared/spec/server-api.txt).

run() -> serve() -> startup() -> main_loop() -> shutdown(). The first SIGINT/SIGTERM asks for
a graceful drain, a second one forces exit. A signal-initiated drain ends run() normally, so a
process stopped by its supervisor exits with status 0; a forced exit ends it with status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from email.utils import formatdate
from types import FrameType
from typing import TYPE_CHECKING, Any

from appserver.errors import AppLoadError, StartupError
from appserver.ops.health import Readiness
from appserver.runtime.logs import configure_logging, logger
from appserver.runtime.loops import loop_factory
from appserver.runtime.operations import Operations, wants_instruments
from appserver.runtime.sockets import (
    Listener,
    inherit_listeners,
    open_listeners,
    open_sockets,
    systemd_assignments,
)
from appserver.runtime.state import ServerState

if TYPE_CHECKING:
    from appserver.config.model import Config

HANDLED_SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
if sys.platform == "win32":  # pragma: no cover
    HANDLED_SIGNALS += (signal.SIGBREAK,)

TICK = 0.1  # seconds between on_tick calls
# The exit status of a server that could not start (lifespan startup failed, a socket could not
# be bound, a certificate could not be loaded): uvicorn's STARTUP_FAILURE, gunicorn's too. A
# supervisor does not restart a worker that exits with it.
STARTUP_FAILURE = 3

__all__ = [
    "HANDLED_SIGNALS",
    "STARTUP_FAILURE",
    "Server",
    "ServerState",
    "bind_listeners",
    "configure_logging",
]


def bind_listeners(config: Config, reuse: list[Listener] | None = None) -> list[Listener]:
    """Bind every listener of ``config`` without TLS (a supervisor's job: the workers load the
    certificates), taking systemd's sockets. Listeners in ``reuse`` whose settings are
    unchanged are kept, re-numbered, instead of bound again (a reload on the same ports)."""
    configs = config.listener_configs()
    kept: dict[int, list[Listener]] = {}
    if reuse:
        for listener in reuse:
            kept.setdefault(listener.index, []).append(listener)
    old_configs = [] if not reuse else reuse[0].configs
    result: list[Listener] = []
    fresh = [i for i, c in enumerate(configs) if c not in old_configs]
    if fresh or not reuse:
        # systemd's sockets are taken once, at the first bind (the variables are unset then).
        systemd = {} if reuse else systemd_assignments(configs, os.environ, os.getpid())
        opened = open_sockets(config, systemd, only=set(fresh) if reuse else None)
        result.extend(opened)
    for index, listener_config in enumerate(configs):
        if reuse and listener_config in old_configs:
            for listener in kept.get(old_configs.index(listener_config), []):
                listener.index = index
                result.append(listener)
    for listener in result:
        listener.configs = configs
    result.sort(key=lambda listener: listener.index)
    return result


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.server_state = ServerState()
        self.started = False
        self.should_exit = False
        self.force_exit = False
        self.last_notified = 0.0
        self.servers: list[asyncio.AbstractServer] = []
        self.listeners: list[Listener] = []
        self.lifespan: Any = None
        self._captured_signals: list[int] = []
        # uvicorn's attribute: limit_max_requests with this process's jitter added.
        jitter = config.limit_max_requests_jitter
        self.limit_max_requests: int | None = (
            config.limit_max_requests + (random.randint(0, jitter) if jitter else 0)
            if config.limit_max_requests is not None
            else None
        )
        self._max_requests: int | None = None
        self._logging_configured = False
        # Set by the supervisor in a worker process: sockets it bound (with the index of the
        # listener each came from) and the link it pings and hears from (see supervisor.py).
        self.inherited: list[tuple[socket.socket, int]] | None = None
        self.worker_link: Any = None
        # Set by `appserver serve`: builds the configuration again from its sources, for
        # SIGHUP (certificates reloaded in place; see reload()).
        self.reread: Callable[[], Config] | None = None
        self._reload_asked = False

    # --- entry points --------------------------------------------------------------------------
    def run(self, sockets: list[socket.socket] | None = None) -> None:
        """Configure logging, load the config, and serve on a new event loop until stopped.

        Returns normally after a signal-initiated graceful drain (exit status 0); raises
        SystemExit(3) when the server cannot start (1 when the app cannot be imported, as in
        uvicorn) and SystemExit(1) when a second signal forced the exit.
        """
        self._configure_logging()
        self._load_or_exit()
        try:
            new_loop = loop_factory(self.config.loop)
        except StartupError as exc:
            logger.error("%s", exc)
            raise SystemExit(STARTUP_FAILURE) from None
        loop = new_loop()
        try:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.serve(sockets=sockets))
        finally:
            try:
                _cancel_all(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()
        if self.force_exit:
            # A second signal cut the drain short: in-flight work may have been lost, so this
            # is not the clean stop that status 0 reports.
            raise SystemExit(1)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve in the running loop until stopped. Exits with status 3 if startup fails."""
        with self.capture_signals():
            await self._serve(sockets)

    async def _serve(self, sockets: list[socket.socket] | None) -> None:
        self._configure_logging()
        self._load_or_exit()
        logger.info("Started server process [%d]", os.getpid())
        await self.startup(sockets=sockets)
        if self.started:
            await self.main_loop()
            await self.shutdown(sockets=sockets)
            logger.info("Finished server process [%d]", os.getpid())
        else:
            # A second signal cutting a stuck startup short is a forced exit, not a failure.
            raise SystemExit(1 if self.force_exit else STARTUP_FAILURE)

    def _configure_logging(self) -> None:
        # Once per server, by whichever entry point comes first: run(), or startup() for the
        # programs that drive the lifecycle themselves (uvicorn configures logging in
        # Config.__init__; our Config is plain data).
        if not self._logging_configured:
            try:
                configure_logging(self.config)
            except StartupError as exc:
                # Logging is what failed: say it on stderr, in one line.
                print(f"appserver: {exc}", file=sys.stderr)
                raise SystemExit(STARTUP_FAILURE) from None
            self._logging_configured = True

    def _load_or_exit(self) -> None:
        if self.config.loaded:
            return
        try:
            self.config.load()
        except AppLoadError as exc:
            logger.error("%s", exc)
            raise SystemExit(1) from None  # uvicorn's status for an app it cannot import
        except StartupError as exc:
            logger.error("%s", exc)
            raise SystemExit(STARTUP_FAILURE) from None

    # --- lifecycle -----------------------------------------------------------------------------
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Run lifespan startup, bind, start accepting. Needs ``config.load()`` first."""
        config = self.config
        lifespan_class = config.lifespan_class  # AttributeError when load() was not called
        self._configure_logging()
        protocol_class = config.http_protocol_class
        self.lifespan = lifespan_class(config)
        # No request is served before the app says it is ready: bind only after startup.
        if not await self._unless_forced(self.lifespan.startup()):
            logger.warning("Forced exit during application startup")
            self.lifespan.cancel()
            self.should_exit = True
            return
        if self.lifespan.should_exit:
            self.should_exit = True
            return
        self.update_default_headers()
        self._max_requests = self.limit_max_requests
        loop = asyncio.get_running_loop()
        state = self.server_state
        app_state = self.lifespan.state

        if wants_instruments(config):
            state.operations = Operations(config, state)

        def factory_for(listener: Listener) -> Callable[[], asyncio.Protocol]:
            tls = listener.tls
            cls: Any = protocol_class
            if listener.serves == "ops":
                from appserver.runtime.instrumented import protocol_for

                cls = protocol_for(config)
            if listener.proxy_protocol:
                from appserver.runtime.proxied import with_proxy_protocol

                cls = with_proxy_protocol(cls)
            if listener.serves == "ops":
                return lambda: cls(config, state, app_state, loop, tls=tls, ops_only=True)
            if tls is None:  # uvicorn's protocol signature: a custom class needs no more
                return lambda: cls(config, state, app_state, loop)
            return lambda: cls(config, state, app_state, loop, tls=tls)

        loaded = config._require_loaded()
        try:
            # Every socket is open before any is served: a bad listener means none is.
            if self.inherited is not None and not sockets:
                self.listeners = inherit_listeners(config, loaded.tls, self.inherited)
            else:
                self.listeners = open_listeners(config, loaded.tls, loaded.systemd, sockets)
            for listener in self.listeners:
                sock = listener.sock
                context = listener.tls.context if listener.tls is not None else None
                # The handshake gets the time a request head gets (timeouts.header_read):
                # asyncio's 60 s default would let a silent TLS client hold a connection.
                handshake = config.timeout_header_read if context is not None else None
                protocol_factory = factory_for(listener)
                server: asyncio.AbstractServer
                if sock.family == socket.AF_UNIX:
                    server = await loop.create_unix_server(
                        protocol_factory,
                        sock=sock,
                        backlog=listener.backlog,
                        ssl=context,
                        ssl_handshake_timeout=handshake,
                    )
                else:
                    server = await loop.create_server(
                        protocol_factory,
                        sock=sock,
                        backlog=listener.backlog,
                        ssl=context,
                        ssl_handshake_timeout=handshake,
                    )
                self.servers.append(server)
        except (StartupError, OSError) as exc:
            logger.error("%s", exc)
            for server in self.servers:
                server.close()
            self.servers = []
            for listener in self.listeners:
                listener.close()
            self.listeners = []
            await self.lifespan.shutdown()
            self.should_exit = True
            return
        if self.worker_link is None:
            for listener in self.listeners:
                logger.info("Listening on %s (Press CTRL+C to quit)", listener.describe())
        self.started = True
        state.readiness = Readiness.READY
        if self.worker_link is not None:
            self.worker_link.ready(self)

    async def main_loop(self) -> None:
        """Tick every 0.1 s until on_tick says stop."""
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            await asyncio.sleep(TICK)
            should_exit = await self.on_tick(counter)

    async def on_tick(self, counter: int) -> bool:
        """Periodic duties; returns True when the server should stop."""
        if counter % 10 == 0:
            self.update_default_headers()
            operations = self.server_state.operations
            if operations is not None:
                operations.publish()
            notify = self.config.callback_notify
            if notify is not None:
                now = time.monotonic()
                if now - self.last_notified > self.config.timeout_notify:
                    self.last_notified = now
                    await notify()
        if self._reload_asked:
            self._reload_asked = False
            self.reload()
        if self.should_exit:
            return True
        limit = self._max_requests
        if limit is not None and self.server_state.total_requests >= limit:
            if self.worker_link is not None:
                # A worker: the supervisor starts the replacement first, then stops this one.
                self._max_requests = None
                self.worker_link.max_requests_reached(limit)
                return False
            logger.warning("Maximum request limit of %d exceeded. Terminating process.", limit)
            # Stopping now is the same decision as a first signal: code watching should_exit
            # learns of it, and a signal during the drain that follows forces exit.
            self.should_exit = True
            return True
        return False

    def update_default_headers(self) -> None:
        """Server, Date (refreshed once a second, never per request) and the custom headers."""
        config = self.config
        custom = config.encoded_headers
        names = {name for name, _ in custom}
        headers: list[tuple[bytes, bytes]] = []
        if config.date_header and b"date" not in names:
            headers.append((b"date", formatdate(usegmt=True).encode("latin-1")))
        if config.server_header and b"server" not in names:
            headers.append((b"server", b"appserver"))
        self.server_state.default_headers = headers + custom

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, drain connections (bounded by timeout_graceful_shutdown), cancel
        what is left, then run lifespan shutdown."""
        state = self.server_state
        state.readiness = Readiness.DRAINING
        await self._shutdown_delay()
        logger.info("Shutting down")
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        state.draining = True
        for connection in list(state.connections):
            connection.shutdown()
        try:
            await asyncio.wait_for(self._drained(), timeout=self.config.timeout_graceful_shutdown)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            logger.error(
                "Cancel %d running task(s), timeout graceful shutdown exceeded", len(state.tasks)
            )
        if self.force_exit:
            logger.warning("Forced exit: cancel %d running task(s)", len(state.tasks))
        if state.tasks:
            for task in list(state.tasks):
                task.cancel()
            await asyncio.wait(list(state.tasks), timeout=1.0)
            # A task cancelled before its first step never runs the code that removes it.
            state.tasks.difference_update([task for task in state.tasks if task.done()])
        for connection in list(state.connections):
            connection.close()
        await asyncio.sleep(0)  # let transports deliver connection_lost
        lifespan = self.lifespan
        if lifespan is not None and self.force_exit:
            lifespan.cancel()  # lifespan shutdown is skipped: stop it quietly now
        elif lifespan is not None and not await self._unless_forced(lifespan.shutdown()):
            logger.warning("Forced exit during application shutdown")
            lifespan.cancel()
        for listener in self.listeners:
            if listener.unix_path is not None:  # a socket file we made; fds are not ours
                with contextlib.suppress(OSError):
                    os.unlink(listener.unix_path)
                listener.unix_path = None
        if state.operations is not None:
            state.operations.publish()  # the last counts, for the supervisor to keep

    async def _shutdown_delay(self) -> None:
        """timeouts.shutdown_delay: go on accepting and serving for a while, readiness 503
        and every response connection: close, so that load balancers stop sending here before
        anything is refused. Kubernetes removes a pod from its endpoints and signals it at the
        same time, and the proxies learn of the removal later; the preStop sleep people add
        for this race is the same wait, kept here."""
        delay = self.config.timeout_shutdown_delay
        if not delay or not self.started or self.force_exit:
            return
        logger.info("Shutdown delay: serving %gs more while readiness answers 503", delay)
        state = self.server_state
        state.winding_down = True
        for connection in list(state.connections):
            wind_down = getattr(connection, "wind_down", None)
            if wind_down is not None:
                wind_down()
        deadline = time.monotonic() + delay
        ticks = 0
        while not self.force_exit and time.monotonic() < deadline:
            await asyncio.sleep(min(TICK, max(0.0, deadline - time.monotonic())))
            ticks += 1
            if ticks % 10 == 0:  # what on_tick does once a second, while serving goes on
                self.update_default_headers()
                if state.operations is not None:
                    state.operations.publish()

    async def _unless_forced(self, step: Awaitable[None]) -> bool:
        """Await a lifespan step unless a second signal forces exit first (the app's startup or
        shutdown may never finish). True when the step completed."""
        task = asyncio.ensure_future(step)
        try:
            while not task.done():
                if self.force_exit:
                    task.cancel()
                    await asyncio.wait({task})
                    return False
                await asyncio.wait({task}, timeout=TICK)
        except asyncio.CancelledError:
            task.cancel()  # asyncio.wait() leaves it running when we are cancelled
            raise
        task.result()
        return True

    async def _drained(self) -> None:
        state = self.server_state
        if state.connections or state.tasks:
            logger.info("Waiting for connections to close. (CTRL+C to force quit)")
        while (state.connections or state.tasks) and not self.force_exit:
            await asyncio.sleep(TICK)

    def reload(self) -> None:
        """SIGHUP: read the configuration again and validate it; if valid, reload the TLS
        certificates in place (new handshakes get them) and say which other changes need a
        restart. An invalid configuration changes nothing."""
        from appserver.errors import ConfigError
        from appserver.runtime.tls import reload_certificates

        if self.reread is None:
            return
        try:
            new = self.reread()
        except ConfigError as exc:
            count = len(exc.errors)
            logger.error("Reload refused: %d problem%s; nothing changed", count, "s" * (count != 1))
            for error in exc.errors:
                logger.error("  %s", error)
            return
        if self.config.is_ssl:
            try:
                loaded = self.config._require_loaded()
                count = reload_certificates([lst.tls for lst in self.listeners] or loaded.tls, new)
            except (StartupError, OSError) as exc:
                logger.error("Reload refused: %s; nothing changed", exc)
                return
            logger.info("Reloaded TLS certificates on %d listener(s)", count)
        changed = [
            name
            for name in type(new).model_fields
            if name not in ("app",) and getattr(new, name) != getattr(self.config, name)
        ]
        if changed:
            logger.warning("These changes need a restart to apply: %s", ", ".join(changed))

    # --- signals -------------------------------------------------------------------------------
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First signal: drain and stop. Second: stop now."""
        self._captured_signals.append(sig)
        if self.should_exit:
            self.force_exit = True
        else:
            self.should_exit = True

    def _handle_hangup(self, sig: int, frame: FrameType | None) -> None:
        self._reload_asked = True  # handled on the next tick, in the loop

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Install handle_exit for HANDLED_SIGNALS; restore the previous handlers on exit.

        A previous handler that the program installed itself is then sent the signals we caught,
        so it still learns of them. Python's and asyncio's default handlers are not: they would
        only turn a stop we already carried out into a KeyboardInterrupt.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self._captured_signals = []  # only what arrives while we hold the handlers
        original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        hangup = None
        if self.reread is not None and hasattr(signal, "SIGHUP"):
            hangup = signal.signal(signal.SIGHUP, self._handle_hangup)
        try:
            yield
        finally:
            if hangup is not None:
                signal.signal(signal.SIGHUP, hangup)
            for sig, handler in original.items():
                signal.signal(sig, handler)
            for sig in dict.fromkeys(reversed(self._captured_signals)):
                if _is_programs_own(original[sig]):
                    signal.raise_signal(sig)


def _is_programs_own(handler: Any) -> bool:
    """Whether a previous signal handler is one the program installed to hear of the signal."""
    if not callable(handler) or handler is signal.default_int_handler:
        return False  # SIG_DFL, SIG_IGN, None (set outside Python), or KeyboardInterrupt
    # asyncio.run() (3.11+) installs Runner._on_sigint, wrapped in functools.partial: it
    # cancels the main task and then raises KeyboardInterrupt. Re-raising SIGINT into it after
    # a graceful drain would cancel whatever the program does after `await server.serve()`
    # and end the process with a KeyboardInterrupt traceback (uvicorn does exactly that).
    runner = getattr(asyncio, "Runner", None)
    owner = getattr(getattr(handler, "func", None), "__self__", None)
    return not (runner is not None and isinstance(owner, runner))


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


logging.getLogger("appserver").addHandler(logging.NullHandler())
