"""Logging set-up: appserver's default console format, or the user's own configuration."""

from __future__ import annotations

import json
import logging
import logging.config
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appserver.config.model import Config

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

logger = logging.getLogger("appserver.error")
access_logger = logging.getLogger("appserver.access")

DEFAULT_LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {"format": "%(asctime)s %(levelname)-7s %(message)s"},
        "access": {"format": "%(asctime)s ACCESS  %(message)s"},
    },
    "handlers": {
        "default": {
            "class": "logging.StreamHandler",
            "formatter": "default",
            "stream": "ext://sys.stderr",
        },
        "access": {
            "class": "logging.StreamHandler",
            "formatter": "access",
            "stream": "ext://sys.stdout",
        },
    },
    "loggers": {
        "appserver": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "appserver.error": {"level": "INFO"},
        "appserver.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}


def configure_logging(config: Config) -> None:
    source = config.log_config
    if source == "default":
        logging.config.dictConfig(DEFAULT_LOGGING)
    elif isinstance(source, dict):
        logging.config.dictConfig(source)
    elif isinstance(source, str) and source.endswith(".json"):
        with open(source, encoding="utf-8") as handle:
            logging.config.dictConfig(json.load(handle))
    elif isinstance(source, str):
        logging.config.fileConfig(source, disable_existing_loggers=False)
    if source is not None:
        level = TRACE if config.log_level == "trace" else config.log_level.upper()
        logging.getLogger("appserver").setLevel(level)
        logging.getLogger("appserver.error").setLevel(level)
    if not config.access_log:
        access_logger.handlers = []
        access_logger.propagate = False
