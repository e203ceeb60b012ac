"""Listeners as data: where to accept connections and, optionally, with which TLS settings.

A listener is a ``bind`` address (gunicorn's and hypercorn's spelling) plus socket options and
an optional ``[listeners.tls]`` table. The flat uvicorn keywords (``host``/``port``, ``uds``,
``fd``, ``ssl_*``) describe one listener; :meth:`Config.listener_configs` turns either form into
the same list. Nothing here opens a socket or reads a certificate: ``appserver.runtime.sockets``
and ``appserver.runtime.tls`` do, from what was validated here.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from appserver.config.addresses import BIND_FORMS, Address, format_tcp, parse_bind

__all__ = ["BIND_FORMS", "Address", "ListenerConfig", "TLSConfig", "format_tcp", "parse_bind"]


class TLSConfig(BaseModel):
    """``[listeners.tls]``: serve this listener over TLS."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    certfile: str = Field(description="PEM file with the certificate (and its chain).")
    keyfile: str | None = Field(
        None, description="PEM file with the private key (unset: it is in certfile)."
    )
    keyfile_password: str | None = Field(None, description="Password of an encrypted key.")
    keyfile_password_file: str | None = Field(
        None, description="File whose first line is the key's password (for secrets mounts)."
    )
    ca_certs: str | None = Field(
        None, description="PEM file of the CAs that client certificates must chain to."
    )
    client_certs: Literal["none", "optional", "required"] = Field(
        "none", description="Ask clients for a certificate: none, optional or required (mTLS)."
    )
    ciphers: str | None = Field(
        None, description="OpenSSL cipher list for TLS 1.2 (unset: Python's secure default)."
    )
    min_version: Literal["TLSv1.2", "TLSv1.3"] = Field(
        "TLSv1.2", description="Oldest TLS version accepted."
    )

    @model_validator(mode="after")
    def _check(self) -> TLSConfig:
        if self.keyfile_password is not None and self.keyfile_password_file is not None:
            raise ValueError("keyfile_password and keyfile_password_file are exclusive")
        if self.client_certs != "none" and self.ca_certs is None:
            raise ValueError(
                f'client_certs = "{self.client_certs}" needs ca_certs, the CAs to verify them with'
            )
        return self


class ListenerConfig(BaseModel):
    """``[[listeners]]``: one socket to accept connections on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bind: str = Field(description=f"Where to listen: {BIND_FORMS}.")
    backlog: int | None = Field(None, ge=1, description="Listen backlog (unset: server.backlog).")
    reuse_port: bool = Field(
        False, description="SO_REUSEPORT: several processes may bind the same port."
    )
    ipv6_only: bool = Field(
        False,
        description="For an IPv6 address: do not also accept IPv4 (dual-stack is the default).",
    )
    unix_mode: str | None = Field(
        None, description='Permissions of a unix: socket file, in octal ("0660").'
    )
    unix_owner: str | None = Field(None, description="Owner (user name or uid) of a unix: socket.")
    unix_group: str | None = Field(None, description="Group (name or gid) of a unix: socket.")
    tls: TLSConfig | None = Field(None, description="Serve over TLS with these settings.")
    proxy_protocol: bool = Field(
        False,
        description="Every connection starts with a PROXY protocol v1 or v2 header (HAProxy, AWS "
        "NLB), which gives the client address; only peers in proxy.trusted may send one.",
    )
    serves: Literal["app", "ops"] = Field(
        "app",
        description='"ops": only the health, readiness and metrics paths (health.bind, '
        "metrics.bind), never the app.",
    )

    @field_validator("bind")
    @classmethod
    def _check_bind(cls, value: str) -> str:
        parse_bind(value)
        return value.strip()

    @field_validator("unix_mode", mode="before")
    @classmethod
    def _check_mode(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = oct(value)[2:]  # TOML 0o660
        if isinstance(value, str) and not re.fullmatch(r"0?[0-7]{3}", value.strip()):
            raise ValueError(f'expected an octal mode like "0660", got {value!r}')
        return value

    @model_validator(mode="after")
    def _check_options(self) -> ListenerConfig:
        address = self.address
        unix = [
            name
            for name in ("unix_mode", "unix_owner", "unix_group")
            if getattr(self, name) is not None
        ]
        if unix and address.kind != "unix":
            verb = "applies" if len(unix) == 1 else "apply"
            raise ValueError(f"{', '.join(unix)} {verb} to a unix: bind only")
        if self.ipv6_only and not address.ipv6:
            raise ValueError("ipv6_only applies to an IPv6 bind ([::]:PORT) only")
        if self.reuse_port and address.kind != "tcp":
            raise ValueError("reuse_port applies to a HOST:PORT bind only")
        if self.proxy_protocol and self.tls is not None:
            # asyncio runs the TLS handshake before the protocol sees a byte, and a proxy sends
            # its PROXY header in clear before the handshake: the two cannot meet here.
            raise ValueError(
                "proxy_protocol with tls is not supported: the PROXY header comes before the "
                "TLS handshake; terminate TLS at the proxy, or pass TLS through without it"
            )
        return self

    @property
    def address(self) -> Address:
        return parse_bind(self.bind)

    @property
    def mode(self) -> int | None:
        return int(self.unix_mode, 8) if self.unix_mode is not None else None

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"


def listeners_from_text(value: Any) -> Any:
    """Bind strings become listener tables: ``APPSERVER_BIND=a,b`` and ``--bind a`` say only
    where; a TOML table or JSON object says the rest."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list | tuple):
        return [{"bind": item} if isinstance(item, str) else item for item in value]
    return value
