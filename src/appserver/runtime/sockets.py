"""Listening sockets from the validated listeners: TCP (IPv4, IPv6), Unix, inherited, systemd.

Every socket is opened before any is served (``open_listeners`` closes what it opened when one
fails), so a bad listener means nothing is served. Errors name the listener and say why.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import socket
import stat
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from appserver.errors import StartupError
from appserver.runtime.tls import ServerTLS

if TYPE_CHECKING:
    from appserver.config.listeners import ListenerConfig
    from appserver.config.model import Config

SYSTEMD_FIRST_FD = 3  # sd_listen_fds(3): passed sockets start at fd 3
SYSTEMD_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


@dataclass
class Listener:
    sock: socket.socket
    tls: ServerTLS | None = None
    backlog: int = 2048
    unix_path: str | None = None  # a socket file we created, removed on exit
    index: int = 0  # the config.listener_configs() entry it came from
    configs: list[ListenerConfig] = field(default_factory=list)  # that list (a supervisor's)
    serves: str = "app"  # "ops": health.bind / metrics.bind, the operations endpoints only
    proxy_protocol: bool = False  # each connection starts with a PROXY protocol header

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    def describe(self) -> str:
        """``https://0.0.0.0:8443`` or ``unix:/run/app.sock``, with the port actually bound."""
        address = self.sock.getsockname()
        if self.sock.family == socket.AF_UNIX:
            path = address if isinstance(address, str) else address.decode(errors="replace")
            return f"unix:{path}" if self.tls is None else f"https+unix:{path}"
        host, port = address[0], address[1]
        if self.sock.family == socket.AF_INET6:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{port}"

    def close(self) -> None:
        self.sock.close()
        if self.unix_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.unix_path)
            self.unix_path = None


def bind_tcp(
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    ipv6_only: bool = False,
    label: str | None = None,
) -> socket.socket:
    where = label or f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"{where}: cannot resolve host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # "::" means every address, IPv4 included (dual-stack, as nginx's ipv6only=off),
            # unless ipv6_only; where the OS forbids dual-stack the option fails quietly.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(ipv6_only))
        sock.bind(address)
    except OSError as exc:
        sock.close()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise StartupError(f"{where}: cannot bind {host}:{port}: {reason}") from None
    return sock


def bind_unix(
    path: str,
    *,
    mode: int | None = None,
    owner: str | None = None,
    group: str | None = None,
    label: str | None = None,
) -> socket.socket:
    where = label or f"unix:{path}"
    uid = _lookup_id(owner, pwd.getpwnam, "user", where) if owner is not None else -1
    gid = _lookup_id(group, grp.getgrnam, "group", where) if group is not None else -1
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.remove(path)  # a stale socket from an earlier run
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StartupError(f"{where}: cannot use {path}: {exc.strerror or exc}") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        directory = os.path.dirname(path) or "."
        reason = exc.strerror or str(exc)
        if not os.path.isdir(directory):
            reason = f"the directory {directory} does not exist"
        raise StartupError(f"{where}: cannot bind unix socket {path}: {reason}") from None
    try:
        # uvicorn's 0o666 unless told: the file's directory is what guards it then.
        os.chmod(path, mode if mode is not None else 0o666)
        if uid != -1 or gid != -1:
            os.chown(path, uid, gid)
    except OSError as exc:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise StartupError(f"{where}: cannot set the owner or mode of {path}: {exc}") from None
    return sock


def _lookup_id(name: str, lookup: Callable[[str], Any], kind: str, where: str) -> int:
    if name.isdigit():
        return int(name)
    try:
        entry = lookup(name)
    except KeyError:
        raise StartupError(f"{where}: no {kind} named {name!r}") from None
    return int(entry[2])


def from_fd(fd: int, label: str | None = None) -> socket.socket:
    where = label or f"fd://{fd}"
    try:
        # A duplicate, as uvicorn's socket.fromfd: the caller's descriptor stays theirs (ours
        # is closed at shutdown; closing theirs could close whatever reused the number).
        sock = socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM)
        sock = socket.socket(fileno=sock.detach())  # the real family, read from the socket
    except OSError as exc:
        raise StartupError(
            f"{where}: file descriptor {fd} is not open or not a socket: {exc.strerror or exc}"
        ) from None
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise StartupError(f"{where}: file descriptor {fd} is not a stream socket")
    return sock


@dataclass
class SystemdSockets:
    """The sockets systemd passed (sd_listen_fds(3)), by name; unnamed ones are "unknown"."""

    fds: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def named(self, name: str | None, claimed: set[str]) -> list[int]:
        """The fds of ``systemd:NAME``, or for plain ``systemd`` those no named bind claims."""
        if name is None:
            return [fd for fd, n in zip(self.fds, self.names, strict=True) if n not in claimed]
        return [fd for fd, n in zip(self.fds, self.names, strict=True) if n == name]


def take_systemd_sockets(environ: MutableMapping[str, str], pid: int) -> SystemdSockets:
    """Read LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES, check them, and unset them (so the app and
    its children do not take the sockets for theirs), as sd_listen_fds(unset_environment=1)."""
    values = {name: environ.get(name) for name in SYSTEMD_VARIABLES}
    for name in SYSTEMD_VARIABLES:
        environ.pop(name, None)
    count, owner = values["LISTEN_FDS"], values["LISTEN_PID"]
    if count is None:
        raise StartupError(
            "bind = systemd: LISTEN_FDS is not set; start the server from a systemd .socket "
            "unit (or a launcher that passes sockets the same way)"
        )
    if owner is None:
        raise StartupError("bind = systemd: LISTEN_FDS is set but LISTEN_PID is not")
    if not owner.isdigit() or int(owner) != pid:
        raise StartupError(
            f"bind = systemd: LISTEN_PID={owner} is not this process ({pid}): the sockets "
            "were passed to another process"
        )
    if not count.isdigit() or int(count) < 1:
        raise StartupError(f"bind = systemd: LISTEN_FDS={count!r} is not a positive number")
    fds = list(range(SYSTEMD_FIRST_FD, SYSTEMD_FIRST_FD + int(count)))
    names = values["LISTEN_FDNAMES"].split(":") if values["LISTEN_FDNAMES"] else []
    if names and len(names) != len(fds):
        raise StartupError(
            f"bind = systemd: LISTEN_FDNAMES names {len(names)} sockets, LISTEN_FDS says {count}"
        )
    return SystemdSockets(fds, names or ["unknown"] * len(fds))


def systemd_assignments(
    listeners: list[ListenerConfig], environ: MutableMapping[str, str], pid: int
) -> dict[int, list[int]]:
    """For each systemd listener (by index), the passed fds it serves; {} when none."""
    wanted = [i for i, listener in enumerate(listeners) if listener.address.kind == "systemd"]
    if not wanted:
        return {}
    passed = take_systemd_sockets(environ, pid)
    claimed = {name for i in wanted if (name := listeners[i].address.name) is not None}
    assigned: dict[int, list[int]] = {}
    for index in wanted:
        name = listeners[index].address.name
        fds = passed.named(name, claimed)
        if not fds:
            have = ", ".join(sorted(set(passed.names)))
            what = f"no socket named {name!r}" if name else "no socket left unnamed by others"
            raise StartupError(
                f"listeners[{index}] ({listeners[index].bind}): systemd passed "
                f"{what} (LISTEN_FDNAMES: {have})"
            )
        assigned[index] = fds
    return assigned


def open_listeners(
    config: Config,
    tls: list[ServerTLS | None],
    systemd: Mapping[int, list[int]],
    sockets: list[socket.socket] | None,
    only: set[int] | None = None,
) -> list[Listener]:
    """Open every listener, or none: StartupError after closing what was already opened.

    Sockets passed in win over the configured app listeners (uvicorn's ``sockets=``); they
    get the flat TLS settings, or the TLS of the listener at the same position. The
    operations listeners (health.bind, metrics.bind) are opened all the same.
    """
    opened: list[Listener] = []
    if sockets:
        flat = config.listeners is None
        configs = config.listener_configs()
        opened = [
            Listener(
                sock,
                tls[0] if flat else (tls[i] if i < len(tls) else None),
                config.backlog,
                proxy_protocol=not flat and i < len(configs) and configs[i].proxy_protocol,
            )
            for i, sock in enumerate(sockets)
        ]
        ops = {
            i for i, listener in enumerate(config.listener_configs()) if listener.serves == "ops"
        }
        if not ops:
            return opened
        only = ops if only is None else only & ops
    try:
        for index, listener in enumerate(config.listener_configs()):
            if only is not None and index not in only:
                continue
            if listener.serves == "ops":
                label = f"the operations listener ({listener.bind})"
            elif config.listeners:
                label = f"listeners[{index}] ({listener.bind})"
            else:
                label = None
            backlog = listener.backlog or config.backlog
            for sock, unix_path in _open(listener, label, systemd.get(index, [])):
                opened.append(
                    Listener(
                        sock,
                        tls[index],
                        backlog,
                        unix_path,
                        index,
                        serves=listener.serves,
                        proxy_protocol=listener.proxy_protocol,
                    )
                )
    except BaseException:
        for done in opened:
            done.close()
        raise
    return opened


def inherit_listeners(
    config: Config, tls: list[ServerTLS | None], inherited: list[tuple[socket.socket, int]]
) -> list[Listener]:
    """Listeners on sockets a supervisor bound: each gets the TLS of the listener it came
    from; the supervisor, not this process, removes Unix socket files."""
    configs = config.listener_configs()
    return [
        Listener(
            sock,
            tls[index],
            configs[index].backlog or config.backlog,
            index=index,
            serves=configs[index].serves,
            proxy_protocol=configs[index].proxy_protocol,
        )
        for sock, index in inherited
    ]


def open_sockets(
    config: Config, systemd: Mapping[int, list[int]], only: set[int] | None = None
) -> list[Listener]:
    """The configured listeners' sockets (those in ``only``, by index, if given), without TLS
    (a supervisor binds, its workers load the certificates); ``Listener.index`` says which
    listener each is."""
    return open_listeners(config, [None] * len(config.listener_configs()), systemd, None, only=only)


def _open(
    listener: ListenerConfig, label: str | None, systemd_fds: list[int]
) -> list[tuple[socket.socket, str | None]]:
    address = listener.address
    if address.kind == "tcp":
        sock = bind_tcp(
            address.host,
            address.port,
            reuse_port=listener.reuse_port,
            ipv6_only=listener.ipv6_only,
            label=label,
        )
        return [(sock, None)]
    if address.kind == "unix":
        sock = bind_unix(
            address.path,
            mode=listener.mode,
            owner=listener.unix_owner,
            group=listener.unix_group,
            label=label,
        )
        return [(sock, address.path)]
    if address.kind == "fd":
        return [(from_fd(address.fd, label), None)]
    return [(from_fd(fd, label), None) for fd in systemd_fds]
