"""The connection core: the phase table, and the phases a real HTTP connection goes through."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from appserver.runtime.connection import TRANSITIONS, Connection, Phase, PhaseError
from tests.conftest import read_until_close, run, serve


def test_every_phase_has_its_transitions_and_closed_is_final() -> None:
    assert set(TRANSITIONS) == set(Phase)
    assert TRANSITIONS[Phase.CLOSED] == frozenset()
    for phase, targets in TRANSITIONS.items():
        assert phase not in targets, f"{phase} lists itself"
        if phase is not Phase.CLOSED:
            assert Phase.CLOSED in targets, f"the client may leave during {phase}"


def test_set_phase_refuses_what_the_table_does_not_allow() -> None:
    conn = Connection()
    conn.phase = Phase.IDLE
    conn.set_phase(Phase.ACTIVE)
    with pytest.raises(PhaseError, match="from active to new"):
        conn.set_phase(Phase.NEW)
    conn.phase = Phase.CLOSED
    with pytest.raises(PhaseError):
        conn.set_phase(Phase.ACTIVE)


def test_http_connection_walks_allowed_phases(http: str) -> None:
    seen: list[Phase] = []
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(only(server).phase)
        await release.wait()
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    def only(server: Any) -> Any:
        (conn,) = server.server_state.connections
        return conn

    async def settle(check: Any) -> None:
        for _ in range(200):
            if check():
                return
            await asyncio.sleep(0.005)
        raise AssertionError("never settled")

    async def main() -> None:
        nonlocal server
        async with serve(app, http) as (server, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await settle(lambda: server.server_state.connections)
            conn = only(server)
            seen.append(conn.phase)  # NEW
            writer.write(b"GET / HTTP/1.1\r\nHo")
            await settle(lambda: conn.phase is not Phase.NEW)
            seen.append(conn.phase)  # HEAD
            writer.write(b"st: x\r\n\r\n")
            await settle(lambda: len(seen) == 3)  # the app saw ACTIVE
            release.set()
            await reader.readuntil(b"\r\n\r\n")
            await settle(lambda: conn.phase is not Phase.ACTIVE)
            seen.append(conn.phase)  # IDLE
            server.should_exit = True
            conn.shutdown()  # idle: a last call (LAST_CALL), then it closes
            await settle(lambda: conn.phase is not Phase.IDLE)
            seen.append(conn.phase)  # CLOSING, or CLOSED once the close is through
            await settle(lambda: conn.phase is Phase.CLOSED)
            if seen[-1] is not Phase.CLOSED:
                seen.append(conn.phase)
            writer.close()

    server: Any = None
    run(main())
    assert seen[:4] == [Phase.NEW, Phase.HEAD, Phase.ACTIVE, Phase.IDLE]
    assert seen[4:] in ([Phase.CLOSING, Phase.CLOSED], [Phase.CLOSED])
    for before, after in itertools.pairwise(seen):
        assert after in TRANSITIONS[before]


def test_a_drain_gives_idle_keep_alive_connections_a_last_call(http: str) -> None:
    """Closing an idle keep-alive connection at once races the client's next request (it
    meets a reset): on a graceful stop the connection may still bring one request, answered
    with connection: close; one that stays idle closes after LAST_CALL."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main() -> tuple[bytes, bytes]:
        async with serve(app, http) as (server, port):
            busy_r, busy_w = await asyncio.open_connection("127.0.0.1", port)
            idle_r, idle_w = await asyncio.open_connection("127.0.0.1", port)
            for writer, reader in ((busy_w, busy_r), (idle_w, idle_r)):
                writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                await reader.readuntil(b"ok")
            for conn in list(server.server_state.connections):
                conn.shutdown()
            busy_w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # during the last call
            last = await asyncio.wait_for(busy_r.read(), 5)  # served, then closed
            idle_end = await asyncio.wait_for(idle_r.read(), 5)  # closed, nothing sent
            busy_w.close()
            idle_w.close()
            return last, idle_end

    last, idle_end = run(main())
    assert last.startswith(b"HTTP/1.1 200 ") and b"connection: close\r\n" in last
    assert last.endswith(b"ok")
    assert idle_end == b""


def test_a_connection_made_after_the_drain_began_drains_too(http: str) -> None:
    """asyncio and uvloop build the protocol when they accept and call connection_made a
    callback later: a connection accepted just before the listener closed is not among those
    the drain goes through. It must drain all the same (its request answered with
    connection: close, then closed), not stay a keep-alive connection the drain waits on until
    its timeout closes it under a busy client's request."""
    import dataclasses

    from appserver import Config, Server

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main() -> tuple[bytes, bool]:
        config = Config(app=app, port=0, http=http, log_config=None, lifespan="off")
        config.load()
        server = Server(config)
        base = config.http_protocol_class
        draining: list[asyncio.Task[None]] = []

        class AcceptedAsTheDrainBegins(base):  # type: ignore[misc,valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                # Called where the loop accepts; the drain's first step runs before this
                # connection's connection_made does.
                draining.append(asyncio.ensure_future(server.shutdown()))

        config._loaded = dataclasses.replace(
            config._require_loaded(), http_protocol_class=AcceptedAsTheDrainBegins
        )
        await server.startup()
        port = server.servers[0].sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer, closed = await read_until_close(reader, 5)
        writer.close()
        await asyncio.wait_for(draining[0], 10)
        return answer, closed

    answer, closed = run(main())
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"ok")
    assert b"connection: close\r\n" in answer
    assert closed, "the connection stayed open"


class RecordingTransport:
    """The real transport, with every write and writelines call recorded."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self.calls: list[tuple[str, list[bytes]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def write(self, data: bytes) -> None:
        self.calls.append(("write", [data]))
        self._transport.write(data)

    def writelines(self, pieces: list[bytes]) -> None:
        self.calls.append(("writelines", list(pieces)))
        self._transport.writelines(pieces)


BIG = b"b" * (64 * 1024)


async def _big(scope: Any, receive: Any, send: Any) -> None:
    headers = [(b"content-length", str(len(BIG)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BIG})


async def _small_pieces(scope: Any, receive: Any, send: Any) -> None:
    # 4 x 2 KiB, then an empty final message (how Django ends a streamed response): the
    # buffered pieces pass VECTOR_LIMIT together, though none is big.
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"8192")]}
    )
    for _ in range(4):
        await send({"type": "http.response.body", "body": b"s" * 2048, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def _recorded(app: Any, http: str, loop: str) -> tuple[bytes, list[tuple[str, list[bytes]]]]:
    import dataclasses

    import uvloop

    from appserver import Config, Server

    recorders: list[RecordingTransport] = []

    async def main() -> bytes:
        config = Config(app=app, port=0, http=http, log_config=None, lifespan="off")
        config.load()
        base = config.http_protocol_class

        class Recorded(base):  # type: ignore[misc,valid-type]
            def connection_made(self, transport: Any) -> None:
                recorders.append(RecordingTransport(transport))
                super().connection_made(recorders[-1])

        config._loaded = dataclasses.replace(config._require_loaded(), http_protocol_class=Recorded)
        server = Server(config)
        await server.startup()
        try:
            port = server.servers[0].sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer, closed = await read_until_close(reader, 5)
            writer.close()
            assert closed, "the connection stayed open"
            return answer
        finally:
            server.should_exit = True
            await server.shutdown()

    answer = run(main()) if loop == "asyncio" else uvloop.run(asyncio.wait_for(main(), 10))
    [recorder] = recorders
    return answer, recorder.calls


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_big_body_leaves_as_a_vector_only_where_writelines_is_one(http: str, loop: str) -> None:
    # uvloop's writelines is a writev; asyncio's is a join on 3.11 and, on some 3.12 and 3.13
    # releases, skips pause_writing: there the pieces are joined and written once.
    answer, calls = _recorded(_big, http, loop)
    assert answer.endswith(b"\r\n\r\n" + BIG)
    [(kind, pieces)] = calls
    if loop == "uvloop":
        assert kind == "writelines" and len(pieces) == 2 and pieces[1] is BIG
    else:
        assert kind == "write"


def test_small_pieces_are_joined_and_no_empty_piece_is_written(http: str) -> None:
    # asyncio's writelines on 3.12+ never drains a trailing empty piece: a connection given
    # one stays open, polled for writing forever. Small pieces are cheaper joined anyway.
    answer, calls = _recorded(_small_pieces, http, "uvloop")
    assert answer.endswith(b"\r\n\r\n" + b"s" * 8192)
    assert [kind for kind, _ in calls] == ["write"]
    assert all(piece for _, pieces in calls for piece in pieces)


async def one_request(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data, closed = await read_until_close(reader, 5.0)
    writer.close()
    assert closed
    return data


async def no_content(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204})
    await send({"type": "http.response.body"})


def test_app_runs_in_its_own_task_and_a_task_factory_is_honoured(http: str) -> None:
    """Each app call is an asyncio Task (current_task() is it: anyio relies on that), made by
    the loop's task factory when one is set, in a fresh context under reset_contextvars."""
    seen: list[tuple[Any, bool]] = []
    made: list[asyncio.Task[Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        task = asyncio.current_task()
        seen.append((task, task in made))
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kw)
        made.append(task)
        return task

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for reset in (False, True):
            async with serve(app, http, reset_contextvars=reset) as (_, port):
                assert (await one_request(port)).startswith(b"HTTP/1.1 204 ")
                loop.set_task_factory(factory)
                try:
                    assert (await one_request(port)).startswith(b"HTTP/1.1 204 ")
                finally:
                    loop.set_task_factory(None)

    run(main())
    assert len(seen) == 4
    for i, (task, by_factory) in enumerate(seen):
        assert isinstance(task, asyncio.Task)
        assert by_factory is (i % 2 == 1), i


def test_a_loop_class_own_create_task_makes_the_app_task(http: str) -> None:
    """A loop whose class overrides create_task (instrumentation does) makes the app's task."""
    made: list[asyncio.Task[Any]] = []
    current: list[asyncio.Task[Any] | None] = []

    class RecordingLoop(asyncio.SelectorEventLoop):
        def create_task(self, coro: Any, **kw: Any) -> asyncio.Task[Any]:
            task = super().create_task(coro, **kw)
            made.append(task)
            return task

    async def app(scope: Any, receive: Any, send: Any) -> None:
        current.append(asyncio.current_task())
        await no_content(scope, receive, send)

    async def main() -> bytes:
        async with serve(app, http) as (_, port):
            return await one_request(port)

    with asyncio.Runner(loop_factory=RecordingLoop) as runner:
        assert runner.run(asyncio.wait_for(main(), 10)).startswith(b"HTTP/1.1 204 ")
    assert len(current) == 1 and current[0] in made
