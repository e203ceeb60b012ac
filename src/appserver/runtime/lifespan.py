"""The ASGI lifespan protocol: startup before the first request, shutdown after the last.

``lifespan = "on"``: a failure (an exception, ``lifespan.startup.failed``) stops the server.
``lifespan = "auto"``: an app that raises before answering is taken not to support lifespan
(many plain ASGI apps assert ``scope["type"] == "http"``) and the server starts anyway.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from appserver.runtime.logs import logger

if TYPE_CHECKING:
    from appserver.config.model import Config


class LifespanOff:
    # uvicorn's attributes, for the programs and tests that read them.
    startup_failed = False
    shutdown_failed = False
    error_occurred = False

    def __init__(self, config: Config) -> None:
        self.should_exit = False
        self.state: dict[str, Any] = {}

    async def startup(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    def cancel(self) -> None:
        return None


class LifespanOn:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.should_exit = False
        self.state: dict[str, Any] = {}
        self._receive_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._startup_done = asyncio.Event()
        self._shutdown_done = asyncio.Event()
        self._startup_failed = False
        self._shutdown_failed = False
        self._error = False  # the app raised
        self._unsupported = False
        self._cancelled = False  # a forced exit cut it short (see cancel)
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        logger.info("Waiting for application startup.")
        self._task = asyncio.get_running_loop().create_task(self._main())
        await self._receive_queue.put({"type": "lifespan.startup"})
        await self._startup_done.wait()
        if self._startup_failed or (self._error and self.config.lifespan == "on"):
            logger.error("Application startup failed. Exiting.")
            self.should_exit = True
        elif not self._unsupported:
            logger.info("Application startup complete.")

    async def shutdown(self) -> None:
        if self._error or self._unsupported:
            return
        logger.info("Waiting for application shutdown.")
        await self._receive_queue.put({"type": "lifespan.shutdown"})
        await self._shutdown_done.wait()
        if self._shutdown_failed or self._error:
            logger.error("Application shutdown failed.")
        else:
            logger.info("Application shutdown complete.")

    # uvicorn's attributes, for the programs and tests that read them.
    @property
    def startup_failed(self) -> bool:
        return self._startup_failed

    @property
    def shutdown_failed(self) -> bool:
        return self._shutdown_failed

    @property
    def error_occurred(self) -> bool:
        return self._error

    def cancel(self) -> None:
        """Forced exit: stop the app's lifespan coroutine wherever it is stuck. Frameworks
        answer the cancellation with lifespan.shutdown.failed and its traceback (Starlette
        does); that is our doing, not the app's failure, so it is not logged as one."""
        self._cancelled = True
        if self._task is not None:
            self._task.cancel()

    async def _main(self) -> None:
        app = self.config.loaded_app
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            # Not the app's failure: a forced exit skips lifespan shutdown and the loop's
            # clean-up cancels this task. Nothing to report.
            raise
        except BaseException as exc:
            self._error = True
            if self._startup_done.is_set() or self.config.lifespan == "on" or self._startup_failed:
                logger.error("Exception in 'lifespan' protocol", exc_info=exc)
            else:
                # auto: the app does not speak lifespan. Serve it anyway.
                self._error = False
                self._unsupported = True
                logger.info("ASGI 'lifespan' protocol appears unsupported.")
            if not isinstance(exc, Exception):
                raise
        finally:
            self._startup_done.set()
            self._shutdown_done.set()

    async def _receive(self) -> dict[str, Any]:
        return await self._receive_queue.get()

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self._startup_done.set()
        elif kind == "lifespan.startup.failed":
            self._startup_failed = True
            self._startup_done.set()
            if message.get("message"):
                logger.error(message["message"])
        elif kind == "lifespan.shutdown.complete":
            self._shutdown_done.set()
        elif kind == "lifespan.shutdown.failed":
            self._shutdown_failed = True
            self._shutdown_done.set()
            if message.get("message") and not self._cancelled:
                logger.error(message["message"])
        else:
            raise RuntimeError(f"unexpected lifespan message {kind!r}")
