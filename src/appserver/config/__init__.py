"""Configuration: the settings model and (later) the sources it is layered from."""

from appserver.config.model import Config

__all__ = ["Config"]
