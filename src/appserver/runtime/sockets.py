"""Listening sockets from the config: host/port, a Unix socket, or an inherited descriptor."""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

from appserver.errors import StartupError

if TYPE_CHECKING:
    from appserver.config.model import Config


@dataclass
class Listener:
    sock: socket.socket
    scheme: str = "http"

    def describe(self) -> str:
        """``http://127.0.0.1:8000`` or ``unix:/run/app.sock``, with the port actually bound."""
        address = self.sock.getsockname()
        if self.sock.family == socket.AF_UNIX:
            return f"{self.scheme}+unix:{address}"
        host, port = address[0], address[1]
        if self.sock.family == socket.AF_INET6:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{port}"


def bind_tcp(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # "::" means every address, IPv4 included, as it does for nginx's ipv6only=off.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise StartupError(f"cannot bind {host}:{port}: {reason}") from None
    return sock


def bind_unix(path: str) -> socket.socket:
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.remove(path)  # a stale socket from an earlier run
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o666)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot bind unix socket {path!r}: {exc.strerror or exc}") from None
    return sock


def from_fd(fd: int) -> socket.socket:
    try:
        return socket.socket(fileno=fd)
    except OSError as exc:
        raise StartupError(f"cannot use file descriptor {fd}: {exc.strerror or exc}") from None


def open_listeners(config: Config, sockets: list[socket.socket] | None) -> list[Listener]:
    """Sockets to listen on: the ones passed in, else the one the config describes."""
    if sockets:
        return [Listener(sock) for sock in sockets]
    if config.fd is not None:
        return [Listener(from_fd(config.fd))]
    if config.uds is not None:
        return [Listener(bind_unix(config.uds))]
    return [Listener(bind_tcp(config.host, config.port))]
