"""Logging set-up: appserver's default console format, or the user's own configuration."""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appserver.config.model import Config

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

logger = logging.getLogger("appserver.error")
access_logger = logging.getLogger("appserver.access")

DEFAULT_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"
ACCESS_FORMAT = "%(asctime)s ACCESS  %(message)s"


def configure_logging(config: Config) -> None:
    source = config.log_config
    if source == "default":
        _default_logging(config.use_colors)
    elif source is not None:
        # Only a configuration of the user's own needs logging.config, which imports
        # logging.handlers, pickle and socketserver: about 0.4 MiB the default does without.
        import logging.config as logging_config

        if isinstance(source, dict):
            logging_config.dictConfig(source)
        elif source.endswith(".json"):
            with open(source, encoding="utf-8") as handle:
                logging_config.dictConfig(json.load(handle))
        else:
            logging_config.fileConfig(source, disable_existing_loggers=False)
    if source is not None:
        level = TRACE if config.log_level == "trace" else config.log_level.upper()
        logging.getLogger("appserver").setLevel(level)
        logging.getLogger("appserver.error").setLevel(level)
    if not config.access_log:
        access_logger.handlers = []
        access_logger.propagate = False


def _default_logging(use_colors: bool | None = None) -> None:
    """appserver's console logging: server messages on stderr, access lines on stdout, neither
    passed on to the root logger.

    What ``logging.config.dictConfig`` made of the same settings (with
    ``disable_existing_loggers: False``), done directly: the configured loggers lose the
    handlers they had, other ``appserver.*`` loggers are reset to pass everything on to them,
    and every existing logger is enabled. Unlike dictConfig, handlers outside appserver are
    left open: dictConfig closed every handler in the process, which silenced a program's own
    ``FileHandler(mode="w")``.
    """
    configured = {
        "appserver": _console_handler("default", sys.stderr, DEFAULT_FORMAT, use_colors),
        "appserver.error": None,
        "appserver.access": _console_handler("access", sys.stdout, ACCESS_FORMAT, use_colors),
    }
    for name, existing in list(logging.Logger.manager.loggerDict.items()):
        if not isinstance(existing, logging.Logger) or name in configured:
            continue
        if name.startswith("appserver."):
            existing.setLevel(logging.NOTSET)
            existing.handlers = []
            existing.propagate = True
        else:
            existing.disabled = False
    for name, handler in configured.items():
        named = logging.getLogger(name)
        named.setLevel(logging.INFO)
        for old in named.handlers[:]:
            named.removeHandler(old)
        if handler is not None:
            named.addHandler(handler)
            named.propagate = False
        named.disabled = False


def _console_handler(
    name: str, stream: Any, fmt: str, use_colors: bool | None = None
) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.set_name(name)  # as dictConfig names the handlers of its "handlers" table
    if use_colors is None:  # uvicorn's default: colours on a terminal
        use_colors = bool(getattr(stream, "isatty", lambda: False)())
    handler.setFormatter(ColourFormatter(fmt) if use_colors else logging.Formatter(fmt))
    return handler


# uvicorn's colours for the level names.
_COLOURS = {
    TRACE: "\033[34m",  # blue
    logging.DEBUG: "\033[36m",  # cyan
    logging.INFO: "\033[32m",  # green
    logging.WARNING: "\033[33m",  # yellow
    logging.ERROR: "\033[31m",  # red
    logging.CRITICAL: "\033[91m",  # bright red
}


class ColourFormatter(logging.Formatter):
    """The default format with the level name coloured (use_colors)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        colour = _COLOURS.get(record.levelno)
        if colour is None:
            return super().formatMessage(record)
        plain = record.levelname
        record.levelname = f"{colour}{plain:<7}\033[0m"
        try:
            return super().formatMessage(record)
        finally:
            record.levelname = plain
