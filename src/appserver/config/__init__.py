"""Configuration: the settings model, the sources it is layered from, and its settled copy.

``Config`` is imported on first use (PEP 562): a serving process that holds a settled
configuration imports ``appserver.config.settled`` without pydantic.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appserver.config.model import Config

__all__ = ["Config"]


def __getattr__(name: str) -> Any:
    if name == "Config":
        from appserver.config.model import Config

        return Config
    raise AttributeError(f"module 'appserver.config' has no attribute {name!r}")
