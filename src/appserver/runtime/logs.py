"""Logging set-up: appserver's default console format, or the user's own configuration."""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from appserver.errors import StartupError

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
        _default_logging(config.use_colors, config.log_format, config.access_log_format)
    elif source is not None:
        problem = log_config_problem(source)
        if problem is not None:
            raise StartupError(problem)
    # Levels apply whatever log_config is, as uvicorn's: log_config = none leaves the handlers
    # to the program, not the levels it asked for.
    level = TRACE if config.log_level == "trace" else config.log_level.upper()
    logging.getLogger("appserver").setLevel(level)
    logging.getLogger("appserver.error").setLevel(level)
    # As uvicorn: the access lines follow log_level too (warning hides them), unless
    # access_log = true was set explicitly, which asks for them whatever the level.
    explicit = "access_log" in config.model_fields_set and config.access_log
    access_logger.setLevel(logging.INFO if explicit else level)
    if not config.access_log:
        access_logger.handlers = []
        access_logger.propagate = False


def read_log_config(source: str) -> dict[str, Any] | None:
    """The dictConfig mapping of a .json, .yaml or .yml file (None: an INI file, for
    fileConfig). Raises OSError or ValueError (with the file's own error) when unreadable."""
    lowered = source.lower()
    if lowered.endswith(".json"):
        with open(source, encoding="utf-8") as handle:
            loaded = json.load(handle)
    elif lowered.endswith((".yaml", ".yml")):
        try:
            import yaml  # type: ignore[import-untyped]
        except ImportError:
            raise ValueError(f"{source}: a YAML logging config needs PyYAML installed") from None
        with open(source, encoding="utf-8") as handle:
            loaded = yaml.safe_load(handle)
    else:
        if not os.path.isfile(source):
            raise FileNotFoundError(f"{source}: no such file")
        return None
    if not isinstance(loaded, dict):
        raise ValueError(f"{source}: expected a dictConfig mapping, got {type(loaded).__name__}")
    return loaded


def apply_log_config(source: dict[str, Any] | str) -> None:
    """Set logging up from a dictConfig mapping or a .json/.yaml/.ini file (uvicorn's forms)."""
    # Only a configuration of the user's own needs logging.config, which imports
    # logging.handlers, pickle and socketserver: about 0.4 MiB the default does without.
    import logging.config as logging_config

    if isinstance(source, dict):
        logging_config.dictConfig(source)
        return
    mapping = read_log_config(source)
    if mapping is not None:
        logging_config.dictConfig(mapping)
    else:
        logging_config.fileConfig(source, disable_existing_loggers=False)


def log_config_problem(source: dict[str, Any] | str) -> str | None:
    """Apply ``source`` as serve will; what went wrong, in one line, or None."""
    shown = "the logging.config table" if isinstance(source, dict) else repr(source)
    try:
        apply_log_config(source)
    except FileNotFoundError:
        return f"log_config {shown}: no such file"
    except Exception as exc:  # fileConfig raises RuntimeError, YAML its own errors, ...
        # dictConfig wraps the cause ("Unable to configure handler 'x'"): say both.
        cause = exc.__cause__
        detail = f"{exc}: {cause}" if cause is not None else str(exc)
        return f"log_config {shown} cannot be used: {detail}"
    return None


class JSONFormatter(logging.Formatter):
    """log_format = "json": one object per record (time, level, logger, message, and the
    traceback as "exception"); always valid JSON, whatever the message holds."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(
                record.created, datetime.timezone.utc
            ).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _default_logging(
    use_colors: bool | None = None, log_format: str = "text", access_format: str = "text"
) -> None:
    """appserver's console logging: server messages on stderr, access lines on stdout, neither
    passed on to the root logger.

    What ``logging.config.dictConfig`` made of the same settings (with
    ``disable_existing_loggers: False``), done directly: the configured loggers lose the
    handlers they had, other ``appserver.*`` loggers are reset to pass everything on to them,
    and every existing logger is enabled. Unlike dictConfig, handlers outside appserver are
    left open: dictConfig closed every handler in the process, which silenced a program's own
    ``FileHandler(mode="w")``.
    """
    error = _console_handler("default", sys.stderr, DEFAULT_FORMAT, use_colors)
    access = _console_handler("access", sys.stdout, ACCESS_FORMAT, use_colors)
    if log_format == "json":
        error.setFormatter(JSONFormatter())
        access.setFormatter(JSONFormatter())
    if access_format == "json":
        # The line is a JSON object already (with its own time): nothing around it.
        access.setFormatter(logging.Formatter("%(message)s"))
    configured = {"appserver": error, "appserver.error": None, "appserver.access": access}
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
