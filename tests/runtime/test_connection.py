"""The connection core: the phase table, and the phases a real HTTP connection goes through."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from appserver.runtime.connection import TRANSITIONS, Connection, Phase, PhaseError
from tests.conftest import run, serve


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
            conn.shutdown()
            seen.append(conn.phase)  # CLOSING
            await settle(lambda: conn.phase is Phase.CLOSED)
            seen.append(conn.phase)
            writer.close()

    server: Any = None
    run(main())
    assert seen == [
        Phase.NEW,
        Phase.HEAD,
        Phase.ACTIVE,
        Phase.IDLE,
        Phase.CLOSING,
        Phase.CLOSED,
    ]
    for before, after in itertools.pairwise(seen):
        assert after in TRANSITIONS[before]
