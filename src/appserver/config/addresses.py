"""Bind addresses: the text forms a listener's ``bind`` takes, parsed into an :class:`Address`.

Apart from :mod:`appserver.config.listeners` (which imports pydantic) because the runtime reads a
parsed address while serving, and a serving process that was handed a settled configuration
(:mod:`appserver.config.settled`) never imports pydantic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

BIND_FORMS = '"HOST:PORT", "[IPv6]:PORT", "unix:PATH", "fd://N", "systemd" or "systemd:NAME"'

_PORT = re.compile(r"[0-9]{1,5}")


@dataclass(frozen=True)
class Address:
    """A parsed bind address."""

    kind: Literal["tcp", "unix", "fd", "systemd"]
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1
    name: str | None = None  # systemd:NAME (LISTEN_FDNAMES)

    @property
    def ipv6(self) -> bool:
        return self.kind == "tcp" and ":" in self.host


def parse_bind(text: str) -> Address:
    """``text`` as an address; raises ValueError saying which forms are accepted."""
    value = text.strip()
    if value.startswith("unix:"):
        path = value[len("unix:") :]
        if not path:
            raise ValueError(f"expected a path after unix:, got {text!r}")
        return Address("unix", path=path)
    if value.startswith("fd://"):
        number = value[len("fd://") :]
        if not number.isdigit():
            raise ValueError(f"expected a file descriptor number after fd://, got {text!r}")
        return Address("fd", fd=int(number))
    if value == "systemd" or value.startswith("systemd:"):
        name = value[len("systemd:") :] if value != "systemd" else None
        if name == "":
            raise ValueError(f"expected a socket name after systemd:, got {text!r}")
        return Address("systemd", name=name)
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not host or (rest and not rest.startswith(":")):
            raise ValueError(f"expected [IPv6]:PORT, got {text!r}")
        port = rest[1:] if rest else ""
    else:
        if value.count(":") > 1:
            raise ValueError(f"put an IPv6 address in brackets, [{value}]:PORT")
        host, _, port = value.rpartition(":")
        if not _:
            host, port = value, ""
    if not host:
        raise ValueError(f"expected {BIND_FORMS}, got {text!r}")
    if not port:
        raise ValueError(f"expected a port after the host ({host}:PORT), got {text!r}")
    if not _PORT.fullmatch(port) or int(port) > 65535:
        raise ValueError(f"expected a port 0..65535, got {port!r} in {text!r}")
    return Address("tcp", host=host, port=int(port))


def format_tcp(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
