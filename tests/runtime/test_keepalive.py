"""KeepAliveTimers on a real event loop: order, cancellation, re-arming, the heap rebuild."""

from __future__ import annotations

import asyncio

import pytest

from appserver.runtime.keepalive import KeepAliveTimers
from tests.conftest import run


class Conn:
    """A connection as the timers see it: it records when its timeout came up."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def check_idle(self) -> None:
        self.log.append(self.name)


def test_timeouts_run_in_time_order_whatever_the_arming_order() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        timers = KeepAliveTimers(loop)
        log: list[str] = []
        now = loop.time()
        for name, delay in [("c", 0.06), ("a", 0.02), ("b", 0.04)]:
            timers.call_at(now + delay, Conn(name, log))
        await asyncio.sleep(0.03)
        assert log == ["a"]
        await asyncio.sleep(0.1)
        assert len(timers) == 0
        return log

    assert run(main()) == ["a", "b", "c"]


def test_cancelled_timeout_does_not_run_and_drops_its_connection() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        timers = KeepAliveTimers(loop)
        log: list[str] = []
        conn = Conn("a", log)
        timeout = timers.call_at(loop.time() + 0.02, conn)
        timers.call_at(loop.time() + 0.03, Conn("b", log))
        timers.cancel(timeout)
        timers.cancel(timeout)  # twice is harmless
        assert timeout.conn is None  # the entry no longer keeps the connection alive
        assert len(timers) == 1
        await asyncio.sleep(0.06)
        assert log == ["b"]
        assert len(timers) == 0

    run(main())


def test_a_timeout_can_arm_the_next_one_while_running() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        timers = KeepAliveTimers(loop)
        times: list[float] = []

        class Rearming:
            def check_idle(self) -> None:
                times.append(loop.time())
                if len(times) < 3:
                    timers.call_at(loop.time() + 0.02, self)

        start = loop.time()
        timers.call_at(start + 0.02, Rearming())
        await asyncio.sleep(0.2)
        assert len(times) == 3
        assert times[-1] - start >= 0.06

    run(main())


def test_an_earlier_timeout_rearms_the_loop_timer() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        timers = KeepAliveTimers(loop)
        log: list[str] = []
        timers.call_at(loop.time() + 5.0, Conn("late", log))
        timers.call_at(loop.time() + 0.02, Conn("early", log))
        await asyncio.sleep(0.06)
        assert log == ["early"]

    run(main())


def test_mostly_cancelled_heap_is_rebuilt() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        timers = KeepAliveTimers(loop)
        log: list[str] = []
        when = loop.time() + 60.0
        kept = [timers.call_at(when, Conn(f"k{i}", log)) for i in range(10)]
        dropped = [timers.call_at(when, Conn(f"d{i}", log)) for i in range(200)]
        for timeout in dropped:
            timers.cancel(timeout)
        assert len(timers) == len(kept)
        # Cancelled entries do not pile up: the heap was rebuilt from the live ones.
        assert len(timers._heap) < len(kept) + 110

    run(main())


def test_a_timeout_may_cancel_others_while_running() -> None:
    """Cancelling can rebuild the heap under the loop that runs the due timeouts."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        timers = KeepAliveTimers(loop)
        log: list[str] = []
        when = loop.time() + 0.02
        others = [timers.call_at(when, Conn(f"o{i}", log)) for i in range(150)]

        class Canceller:
            def check_idle(self) -> None:
                log.append("canceller")
                for timeout in others:
                    timers.cancel(timeout)

        timers.call_at(when, Canceller())
        await asyncio.sleep(0.1)
        ran_before = log.index("canceller")
        assert len(log) == ran_before + 1  # nothing cancelled ran, nothing ran twice
        assert len(timers) == 0
        assert timers._heap == []

    run(main())


def test_a_failing_timeout_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    class Failing(Conn):
        def check_idle(self) -> None:
            super().check_idle()
            raise RuntimeError("boom")

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        timers = KeepAliveTimers(loop)
        log: list[str] = []
        now = loop.time()
        timers.call_at(now + 0.01, Failing("a", log))
        timers.call_at(now + 0.03, Conn("b", log))
        timers.call_at(now + 0.05, Conn("c", log))
        await asyncio.sleep(0.15)
        return log

    assert run(main()) == ["a", "b", "c"]
    assert "Error in a keep-alive timeout" in caplog.text
