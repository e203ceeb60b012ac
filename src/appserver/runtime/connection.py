"""What every client connection shares, HTTP and WebSocket alike.

:class:`Connection` is the base of both asyncio protocols (``HTTPProtocol``, and
``WebSocketProtocol`` once a connection upgraded). It owns the parts that do not depend on the
protocol spoken:

* the **phase** of the connection, an explicit :class:`Phase` whose allowed transitions are
  data (:data:`TRANSITIONS`, after h11's ``_state.py``); the timers read it to know which
  timeout applies;
* the one **write buffer**: what the app sends within one loop iteration leaves in one
  ``transport.write`` (a write is a system call, and for small responses and messages it is most
  of the cost), flushed at once when asked, past :data:`COALESCE_LIMIT`, or at the end of the
  iteration;
* **flow control** both ways: ``pause_writing``/``resume_writing`` from the transport and the
  ``drain()`` an app's ``send()`` awaits; ``read_paused`` for back-pressure on the client;
* the **waiter** the app's ``receive()`` awaits, and :meth:`wake`;
* the **app runner**: a task per app call, counted in ``ServerState.tasks`` from creation to end,
  with the outcome (returned, raised, cancelled) handed to the protocol's hooks;
* the **concurrency gate** of ``limit_concurrency``;
* **closing**: every close the server makes writes what is owed, answers every waiter, then
  closes (``transport.close()`` reports ``connection_lost`` only once the buffer drained, which a
  client that does not read may put off forever: nobody may wait for that).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import socket
import struct
import sys
from typing import TYPE_CHECKING, Any, Final

from appserver._accel import mypyc_attr
from appserver.http.cycle import VECTOR_LIMIT, Output, output_size
from appserver.runtime.logs import logger

if TYPE_CHECKING:
    from appserver.runtime.state import ServerState


class Phase(enum.Enum):
    """Where a connection is in its life; what the timers look at."""

    NEW = "new"  # accepted, not one byte read yet
    IDLE = "idle"  # keep-alive: the last response is complete, no byte of the next request
    HEAD = "head"  # part of a request head has arrived
    ACTIVE = "active"  # a request (or a WebSocket session) is being served
    CLOSING = "closing"  # nothing new is served; closes once the current exchange ends
    UPGRADED = "upgraded"  # handed over to another protocol: this one is done
    CLOSED = "closed"  # the transport is gone

    # Members are singletons: identity is equality. Enum's own __hash__ is Python code, and the
    # transition check hashes a phase twice per change, on every request.
    __hash__ = object.__hash__


# The app's task: asyncio.Task itself (C, on CPython), named once for all requests.
_Task: Final = asyncio.Task
_TASK_NAME: Final = "appserver.app"


def _creates_plain_tasks(loop: Any) -> bool:
    """Whether ``loop.create_task`` is asyncio's or uvloop's own, not a loop class's override
    (an instrumented loop's, say), so that making the Task directly changes nothing."""
    create = getattr(type(loop), "create_task", None)
    if create is asyncio.BaseEventLoop.create_task:
        return True
    uvloop_loop = sys.modules.get("uvloop.loop")  # imported when it is the loop in use
    return uvloop_loop is not None and create is getattr(uvloop_loop.Loop, "create_task", None)


NEW: Final = Phase.NEW
IDLE: Final = Phase.IDLE
HEAD: Final = Phase.HEAD
ACTIVE: Final = Phase.ACTIVE
CLOSING: Final = Phase.CLOSING
UPGRADED: Final = Phase.UPGRADED
CLOSED: Final = Phase.CLOSED

# The transitions a connection may make. Pipelined requests stay ACTIVE from one to the next;
# CLOSED is reached from anywhere (the client may go away at any time) and leads nowhere.
TRANSITIONS: Final[dict[Phase, frozenset[Phase]]] = {
    NEW: frozenset({HEAD, ACTIVE, CLOSING, CLOSED}),
    IDLE: frozenset({HEAD, ACTIVE, CLOSING, CLOSED}),
    HEAD: frozenset({ACTIVE, CLOSING, CLOSED}),
    ACTIVE: frozenset({IDLE, HEAD, CLOSING, UPGRADED, CLOSED}),
    CLOSING: frozenset({CLOSED}),
    UPGRADED: frozenset({CLOSED}),
    CLOSED: frozenset(),
}


def cancelled_by_peer() -> bool:
    """Whether a CancelledError out of awaiting :meth:`Connection.wait` only means that another
    coroutine awaiting the same future was cancelled (cancelling a task cancels the future it
    awaits); False when the current task itself is being cancelled, which must propagate."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+; before, assume our own
    return cancelling is not None and not cancelling()


@mypyc_attr(native_class=False)  # mypyc cannot subclass RuntimeError natively
class PhaseError(RuntimeError):
    """A transition :data:`TRANSITIONS` does not allow: a bug in the runtime."""


_LINGER_RESET: Final = struct.pack("ii", 1, 0)  # l_onoff=1, l_linger=0: close() sends RST

if sys.platform == "linux":
    import fcntl
    import termios

    _SIOCOUTQ: int | None = termios.TIOCOUTQ  # the same request number for TCP sockets
else:  # pragma: no cover - the transport's own buffer is all we can see
    _SIOCOUTQ = None

# Buffered writes go out once they reach this many bytes, so an app sending big chunks or
# messages in a loop still meets the transport's flow control (pause_writing) promptly.
COALESCE_LIMIT: Final = 64 * 1024


def _has_big_piece(pieces: list[bytes]) -> bool:
    return any(len(piece) >= VECTOR_LIMIT for piece in pieces)  # mypyc: a plain loop


class Flusher:
    """The end-of-iteration flush every connection of one loop shares.

    A response head is held back until its first body message, and what an app sends within
    one iteration leaves in one write; both need "flush at the end of this iteration". One
    loop callback per iteration for all the connections that asked, not one per connection
    (on a busy server it is one per request: the scheduling cost more than the flush).
    Connections join ``pending`` in :meth:`Connection.schedule_flush`.
    """

    __slots__ = ("loop", "pending", "vectored")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: list[Connection] = []
        # Whether transport.writelines is a vectored write to rely on: on uvloop it is (a
        # writev; empty pieces skipped). asyncio's differs by version: a join and one write on
        # 3.11; on 3.12.0-3.12.8 and 3.13.0-3.13.1 it never calls pause_writing
        # (CVE-2024-12254); on 3.12+ a trailing empty piece is never drained. Elsewhere the
        # connection joins its pieces and writes once.
        self.vectored = type(loop).__module__.split(".", 1)[0] == "uvloop"

    def run(self) -> None:
        pending = self.pending
        self.pending = []  # a flush that asks again is served by the next iteration
        for connection in pending:
            # False when the connection flushed since it asked (nearly always: the app sent
            # its whole response), or it asked twice.
            if connection._flush_scheduled:
                connection.flush()


# Compiled (appserver._accel); subclassed by WebSocketProtocol, HTTPProtocol and through them by
# interpreted classes (the instrumented and proxied protocols).
@mypyc_attr(allow_interpreted_subclasses=True)
class Connection(asyncio.Protocol):
    """The shared core; see the module docstring. Subclasses call :meth:`init_connection`."""

    # Slots: a thousand idle keep-alive connections should cost little memory.
    __slots__ = (
        "_drain_waiter",
        "_flush_scheduled",
        "_flusher",
        "_fresh_context",
        "_limit",
        "_out",
        "_out_size",
        "_plain_tasks",
        "_write_timeout",
        "_write_timer",
        "bytes_received",
        "bytes_sent",
        "loop",
        "phase",
        "read_paused",
        "server_state",
        "transport",
        "waiter",
        "write_paused",
    )

    transport: Any  # asyncio.Transport, or uvloop's look-alike; None once closed

    def init_connection(
        self,
        server_state: ServerState,
        loop: asyncio.AbstractEventLoop,
        limit_concurrency: int | None,
        write_timeout: float | None = None,
        phase: Phase = NEW,
        reset_contextvars: bool = False,
    ) -> None:
        self.server_state = server_state
        # reset_contextvars: each app call in an empty context, not a copy of the server's.
        self._fresh_context = reset_contextvars
        self.loop = loop
        self._plain_tasks = _creates_plain_tasks(loop)
        self.transport = None
        self.phase = phase
        self.read_paused = False
        self.write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.waiter: asyncio.Future[None] | None = None
        # Written this loop iteration, not yet sent; a list only while there is some.
        self._out: list[bytes] | None = None
        self._out_size = 0
        self._flush_scheduled = False
        flusher = server_state.flusher
        if flusher is None or flusher.loop is not loop:
            flusher = server_state.flusher = Flusher(loop)
        self._flusher = flusher
        self._limit = limit_concurrency
        self._write_timeout = write_timeout
        self._write_timer: asyncio.TimerHandle | None = None
        # Counted by the instrumented protocol only (metrics, the access log's bytes): a scrape
        # reads them off the open connections; fold_counts() keeps them when one closes.
        self.bytes_received = 0
        self.bytes_sent = 0

    def fold_counts(self) -> None:
        """This connection leaves ServerState.connections: its byte counts go to the metrics'
        totals (a scrape sums the totals and the open connections' counts)."""
        operations = self.server_state.operations
        if operations is not None and operations.metrics is not None:
            metrics = operations.metrics
            metrics.bytes_received += self.bytes_received
            metrics.bytes_sent += self.bytes_sent
        self.bytes_received = self.bytes_sent = 0

    # --- phase ---------------------------------------------------------------------------------
    def set_phase(self, phase: Phase) -> None:
        if phase not in TRANSITIONS[self.phase]:
            raise PhaseError(f"connection cannot go from {self.phase.value} to {phase.value}")
        self.phase = phase

    @property
    def closing(self) -> bool:
        """Nothing new is served on this connection any more."""
        phase = self.phase
        return phase is CLOSING or phase is CLOSED or phase is UPGRADED

    def stop_serving(self) -> None:
        """Serve nothing new on this connection; what is under way may finish."""
        if not self.closing:
            self.set_phase(CLOSING)

    # --- the one write buffer ------------------------------------------------------------------
    def write(self, data: Output, flush: bool) -> None:
        """Send ``data``: now if ``flush``, else with whatever else this loop iteration sends.

        ``data`` is bytes, or a big body's pieces (appserver.http.cycle.Output), which are
        buffered as they are, not copied together: :meth:`flush` decides how they leave.
        """
        out = self._out
        if isinstance(data, list):
            if out:
                out.extend(data)
            else:
                self._out = out = data
            self._out_size += output_size(data)
        elif data:
            if out:
                out.append(data)
            elif flush:
                if self.transport is not None:
                    self.transport.write(data)  # the common case: a whole response
                return
            else:
                self._out = out = [data]
            self._out_size += len(data)
        # No empty piece is ever buffered (an empty final body message flushes what is).
        if out:
            if flush or self._out_size >= COALESCE_LIMIT:
                self.flush()
            else:
                self.schedule_flush()

    def schedule_flush(self) -> None:
        """Flush at the end of this loop iteration."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            pending = self._flusher.pending
            if not pending:
                self.loop.call_soon(self._flusher.run)
            pending.append(self)

    def flush(self) -> None:
        """Write everything buffered, in one write: one buffer, or on uvloop, when one of the
        pieces is big (appserver.http.cycle.VECTOR_LIMIT), the pieces as a vector (writev):
        copying them together would cost more than the vector."""
        self._flush_scheduled = False
        out = self._out
        if out:
            self._out = None
            self._out_size = 0
            transport = self.transport
            if transport is None:
                return
            if len(out) == 1:
                transport.write(out[0])
            elif self._flusher.vectored and _has_big_piece(out):
                transport.writelines(out)
            else:
                transport.write(b"".join(out))

    # --- flow control --------------------------------------------------------------------------
    def pause_writing(self) -> None:
        self.write_paused = True
        # timeouts.write: a client that leaves this much unread for that long is gone, or an
        # attack; either way it may not hold the buffer (nor, through drain(), the app).
        if self._write_timeout is not None and self._write_timer is None:
            self._write_timer = self.loop.call_later(
                self._write_timeout, self._check_write, self._unsent()
            )

    def _unsent(self) -> int:
        """Bytes the client has not taken yet: our transport's buffer, plus (on Linux) what the
        kernel still holds unacknowledged. The kernel's part matters: with an autotuned send
        buffer of several MiB, a slow reader can take bytes for seconds before the transport
        writes again, and only SIOCOUTQ shows that progress."""
        transport = self.transport
        if transport is None:
            return 0
        unsent: int = transport.get_write_buffer_size()
        sock = transport.get_extra_info("socket")
        if _SIOCOUTQ is not None and sock is not None:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                queued = fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0\0\0\0")
                unsent += struct.unpack("i", queued)[0]
        return unsent

    def _check_write(self, unsent_before: int) -> None:
        """timeouts.write came up while writing is paused: a client that took some of what was
        waiting (a slow reader) gets another period, as nginx's send_timeout counts between
        two successful writes; one that took nothing is dropped."""
        self._write_timer = None
        if not self.write_paused or self.transport is None:
            return
        unsent = self._unsent()
        if unsent < unsent_before:
            assert self._write_timeout is not None
            self._write_timer = self.loop.call_later(self._write_timeout, self._check_write, unsent)
        else:
            logger.info(
                "Closing a connection whose client read nothing for %g s", self._write_timeout
            )
            self.abort()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        self.release_drain()

    def release_drain(self) -> None:
        """Wake a waiting ``drain()``: writing resumed, or the connection is gone."""
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        """Wait until the client reads what we wrote (or goes away)."""
        if self.write_paused and self.transport is not None:
            self._drain_waiter = self.loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    def pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and self.transport is not None:
            self.read_paused = False
            self.transport.resume_reading()

    # --- the waiter ------------------------------------------------------------------------------
    def wait(self) -> asyncio.Future[None]:
        """The future to await for the next :meth:`wake` (more input, or the exchange ended).

        One future for the connection, shared by whoever waits (one coroutine, nearly always):
        a spurious wake-up is harmless because callers look again at what they wait for. A
        plain function, not a coroutine: a message or a body chunk that makes the app wait
        should not also cost a coroutine object. Callers treat a CancelledError that
        :func:`cancelled_by_peer` explains as a wake-up.
        """
        waiter = self.waiter
        if waiter is None or waiter.done():  # done: cancelled with a waiter that gave up
            waiter = self.waiter = self.loop.create_future()
        return waiter

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # --- the app runner --------------------------------------------------------------------------
    def over_limit(self) -> bool:
        """limit_concurrency is reached: too many connections or running apps."""
        limit = self._limit
        if limit is None:
            return False
        state = self.server_state
        return len(state.connections) > limit or len(state.tasks) >= limit

    def run_app(self, app: Any, scope: Any, receive: Any, send: Any, context: Any) -> None:
        """Call the app in a task, counted in ``ServerState.tasks`` until it ends.

        The outcome goes to :meth:`app_returned`, :meth:`app_failed` or :meth:`app_cancelled`
        with ``context``: what the protocol needs to answer (the request cycle, the
        connection), which must have a writable ``task`` attribute.
        """
        coro = self._run(app, scope, receive, send, context)
        loop = self.loop
        fresh = contextvars.Context() if self._fresh_context else None
        if self._plain_tasks and loop.get_task_factory() is None:
            # What loop.create_task does without a factory, less its cost: uvloop's lets the
            # Task name itself ("Task-N", a string formatted per request) and re-enters the
            # loop's checks. A task factory of the user's own, or a loop class's own
            # create_task, is still honoured below.
            task = _Task(coro, loop=loop, name=_TASK_NAME, context=fresh)
        else:
            task = loop.create_task(coro, context=fresh)
        context.task = task
        self.server_state.tasks.add(task)

    async def _run(self, app: Any, scope: Any, receive: Any, send: Any, context: Any) -> None:
        # The task leaves state.tasks here rather than through a done callback (one scheduled
        # callback fewer per request), found through the context (asyncio.current_task() is
        # Python code on 3.11).
        try:
            await app(scope, receive, send)
        except asyncio.CancelledError:
            # Shutdown gave up on this app call; nothing sensible can follow.
            self.app_cancelled(context)
            raise
        except BaseException as exc:
            self.app_failed(context, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self.app_returned(context)
        finally:
            self.server_state.tasks.discard(context.task)

    def app_returned(self, context: Any) -> None:
        """The app's coroutine returned."""

    def app_failed(self, context: Any, exc: BaseException) -> None:
        """The app raised ``exc`` (anything but CancelledError)."""

    def app_cancelled(self, context: Any) -> None:
        """The app's task was cancelled (a forced shutdown)."""
        self.close_transport()

    # --- ends --------------------------------------------------------------------------------------
    def close_transport(self) -> None:
        """Close the connection: write what is owed, answer every waiter, then close."""
        if self._out:
            self.flush()
        self.end_exchanges()
        self.stop_serving()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now, unsent bytes and all (close() would wait for them)."""
        self._write_timer = None
        self._out = None
        self.end_exchanges()
        self.stop_serving()
        transport = self.transport
        if transport is not None:
            # Without SO_LINGER 0 the kernel would go on sending what its buffer holds (MiBs
            # with autotuning) after we let go: reset the connection instead.
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError, AttributeError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            transport.abort()

    def end_exchanges(self) -> None:
        """Whatever the app waits for on this connection will not come: wake it. Subclasses
        first mark their exchanges as ended, so the waiters find out why."""
        self.wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self.fold_counts()
        self.transport = None
        if self.phase is not CLOSED:
            self.set_phase(CLOSED)
        self._out = None
        self._out_size = 0
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        self.end_exchanges()
        self.release_drain()
