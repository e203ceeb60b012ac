"""TLS: SSL contexts built from the validated settings, and the ASGI TLS extension.

Contexts are built by ``Config.load()`` (through the loader), before lifespan startup, so a
missing file, a wrong password or a key that does not match its certificate stops the server
before the app starts, with a message naming the listener and the file. ``appserver check``
builds them too (binding nothing) and adds the certificate's expiry.

Two recipes: a ``[listeners.tls]`` table gets a modern server context (TLS 1.2 or newer,
Python's default ciphers unless given, no renegotiation); the flat uvicorn keywords get
uvicorn's recipe (``ssl_version``, ``ssl_cert_reqs``, ``ssl_ciphers``), so code ported from
uvicorn serves the same TLS, and ``ssl_context_factory`` is called as uvicorn calls it. Both
offer ALPN ``http/1.1`` (h2 comes with HTTP/2).
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from appserver.errors import StartupError

if TYPE_CHECKING:
    from appserver.config.listeners import TLSConfig
    from appserver.config.model import Config

ALPN = ["http/1.1"]
EXPIRY_WARNING_DAYS = 14

_VERIFY = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}
_MIN_VERSION = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
# The ASGI TLS extension gives versions as the numbers on the wire (RFC 8446 §4.2.1).
_WIRE_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


@dataclass
class ServerTLS:
    """A listener's context and what every connection's TLS extension shares."""

    context: ssl.SSLContext
    server_cert: str | None  # the leaf certificate, PEM
    cipher_ids: dict[str, int]  # OpenSSL cipher name -> IANA number

    def extension(self, transport: Any) -> dict[str, Any]:
        """``scope["extensions"]["tls"]`` for one connection (ASGI TLS extension)."""
        sslobj = transport.get_extra_info("ssl_object")
        info: dict[str, Any] = {
            "server_cert": self.server_cert,
            "client_cert_chain": [],
            "client_cert_name": None,
            "client_cert_error": None,
            "tls_version": None,
            "cipher_suite": None,
        }
        if sslobj is None:
            return info
        info["tls_version"] = _WIRE_VERSIONS.get(sslobj.version() or "")
        cipher = sslobj.cipher()
        if cipher is not None:
            info["cipher_suite"] = self.cipher_ids.get(cipher[0])
        der = sslobj.getpeercert(binary_form=True)
        if der:
            # A certificate that failed verification fails the handshake (OpenSSL), so one
            # that is here was verified; Python 3.11 gives the leaf, not the chain.
            info["client_cert_chain"] = [ssl.DER_cert_to_PEM_cert(der)]
            info["client_cert_name"] = rfc4514_name(sslobj.getpeercert().get("subject", ()))
        return info


def listener_tls(tls: TLSConfig, label: str) -> ServerTLS:
    """The context for a ``[listeners.tls]`` table; StartupError names ``label``'s file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _MIN_VERSION[tls.min_version]
    context.options |= ssl.OP_NO_RENEGOTIATION  # a renegotiation flood costs the server CPU
    password = tls.keyfile_password
    if tls.keyfile_password_file is not None:
        password = _read_password(tls.keyfile_password_file, f"{label}.tls.keyfile_password_file")
    _load_chain(context, tls.certfile, tls.keyfile, password, f"{label}.tls")
    if tls.ciphers:
        _set_ciphers(context, tls.ciphers, f"{label}.tls.ciphers")
    if tls.ca_certs is not None:
        _load_cas(context, tls.ca_certs, f"{label}.tls.ca_certs")
    context.verify_mode = _VERIFY[tls.client_certs]
    context.set_alpn_protocols(ALPN)
    return _server_tls(context, tls.certfile)


def flat_tls(config: Config) -> ServerTLS | None:
    """uvicorn's context from the ssl_* keywords, or ssl_context_factory's; None: no TLS."""

    def default_factory() -> ssl.SSLContext:
        if config.ssl_certfile is None:
            raise StartupError("ssl_certfile: required to build the default SSL context")
        context = ssl.SSLContext(config.ssl_version)
        _load_chain(
            context, config.ssl_certfile, config.ssl_keyfile, config.ssl_keyfile_password, "ssl"
        )
        context.verify_mode = ssl.VerifyMode(config.ssl_cert_reqs)
        if config.ssl_ca_certs:
            _load_cas(context, config.ssl_ca_certs, "ssl_ca_certs")
        if config.ssl_ciphers:
            _set_ciphers(context, config.ssl_ciphers, "ssl_ciphers")
        context.set_alpn_protocols(ALPN)
        return context

    factory: Callable[..., Any] | None = config.ssl_context_factory
    if factory is not None:
        context = factory(config, default_factory)
        if not isinstance(context, ssl.SSLContext):
            raise StartupError(
                f"ssl_context_factory returned {type(context).__name__}, not an ssl.SSLContext"
            )
    elif config.ssl_certfile is not None:
        context = default_factory()
    else:
        return None
    return _server_tls(context, config.ssl_certfile)


def reload_certificates(current: list[ServerTLS | None], config: Config) -> int:
    """Load the certificates ``config`` names into the running contexts, in place: new
    handshakes use them, open connections keep theirs. Everything is built and checked first
    (StartupError: nothing changed). Returns how many listeners got their certificates."""
    fresh = tls_for_listeners(config)
    if len(fresh) != len(current) or any(
        (a is None) != (b is None) for a, b in zip(current, fresh, strict=True)
    ):
        raise StartupError("which listeners serve TLS changed: that needs a restart")
    count = 0
    for index, (running, new) in enumerate(zip(current, fresh, strict=True)):
        if running is None or new is None:
            continue
        certfile, keyfile, password = _chain_of(config, index)
        # A password string, never None: OpenSSL would prompt on the terminal for one.
        running.context.load_cert_chain(certfile, keyfile, password=password or "")
        running.server_cert = new.server_cert
        count += 1
    return count


def _chain_of(config: Config, index: int) -> tuple[str, str | None, str | None]:
    if config.listeners is None:
        assert config.ssl_certfile is not None
        return config.ssl_certfile, config.ssl_keyfile, config.ssl_keyfile_password
    tls = config.listeners[index].tls
    assert tls is not None
    password = tls.keyfile_password
    if tls.keyfile_password_file is not None:
        password = _read_password(tls.keyfile_password_file, "keyfile_password_file")
    return tls.certfile, tls.keyfile, password


def tls_for_listeners(config: Config) -> list[ServerTLS | None]:
    """One entry per ``config.listener_configs()``: its TLS, or None for plain HTTP (the
    operations listeners, health.bind and metrics.bind, are plain HTTP)."""
    configs = config.listener_configs()
    ops = [None for listener in configs if listener.serves == "ops"]
    if config.listeners is None:
        return [flat_tls(config), *ops]
    return [
        *(
            listener_tls(listener.tls, f"listeners[{index}]") if listener.tls is not None else None
            for index, listener in enumerate(config.listeners)
        ),
        *ops,
    ]


def expiry_warnings(config: Config, now: float | None = None) -> list[str]:
    """Certificates that have expired or expire within EXPIRY_WARNING_DAYS, one line each."""
    now = time.time() if now is None else now
    files: list[tuple[str, str]] = []
    if config.listeners is None:
        if config.ssl_certfile is not None:
            files.append(("ssl_certfile", config.ssl_certfile))
    else:
        for index, listener in enumerate(config.listeners):
            if listener.tls is not None:
                files.append((f"listeners[{index}].tls.certfile", listener.tls.certfile))
    warnings = []
    for label, path in files:
        expires = certificate_expiry(path)
        if expires is None:
            continue
        days = (expires - now) / 86400
        when = time.strftime("%Y-%m-%d", time.gmtime(expires))
        if days < 0:
            warnings.append(f"{label}: the certificate in {path} expired on {when}")
        elif days < EXPIRY_WARNING_DAYS:
            warnings.append(
                f"{label}: the certificate in {path} expires on {when} ({days:.0f} days)"
            )
    return warnings


def certificate_expiry(path: str) -> float | None:
    """The notAfter time of the first certificate in a PEM file (None if it cannot be read)."""
    try:
        # The stdlib's own decoder (used by its tests): no third-party X.509 parser needed.
        decoded = ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]
    except (OSError, ssl.SSLError, AttributeError):
        return None
    not_after = decoded.get("notAfter")
    return float(ssl.cert_time_to_seconds(not_after)) if not_after else None


def rfc4514_name(subject: Any) -> str:
    """A subject from getpeercert() as an RFC 4514 string (last RDN first: "CN=x,O=y")."""
    short = {
        "commonName": "CN",
        "countryName": "C",
        "localityName": "L",
        "stateOrProvinceName": "ST",
        "organizationName": "O",
        "organizationalUnitName": "OU",
        "streetAddress": "STREET",
        "domainComponent": "DC",
        "userId": "UID",
    }
    rdns = []
    for rdn in reversed(subject):
        parts = [f"{short.get(key, key)}={_escape_dn(str(value))}" for key, value in rdn]
        rdns.append("+".join(parts))
    return ",".join(rdns)


def _escape_dn(value: str) -> str:
    escaped = "".join("\\" + c if c in ',+"\\<>;=' else c for c in value)
    if escaped.startswith((" ", "#")):
        escaped = "\\" + escaped
    if escaped.endswith(" ") and not escaped.endswith("\\ "):
        escaped = escaped[:-1] + "\\ "
    return escaped


def _server_tls(context: ssl.SSLContext, certfile: str | None) -> ServerTLS:
    server_cert = None
    if certfile is not None:
        try:
            with open(certfile, encoding="ascii", errors="replace") as file:
                text = file.read()
            end = text.find("-----END CERTIFICATE-----")
            start = text.find("-----BEGIN CERTIFICATE-----")
            if 0 <= start < end:
                server_cert = text[start : end + len("-----END CERTIFICATE-----")] + "\n"
        except OSError:
            pass
    ids = {cipher["name"]: cipher["id"] & 0xFFFF for cipher in context.get_ciphers()}
    return ServerTLS(context, server_cert, ids)


def _readable(path: str, label: str) -> None:
    if not os.path.exists(path):
        raise StartupError(f"{label}: {path} does not exist")
    if not os.access(path, os.R_OK) or os.path.isdir(path):
        raise StartupError(f"{label}: {path} cannot be read")


def _load_chain(
    context: ssl.SSLContext,
    certfile: str,
    keyfile: str | None,
    password: str | None,
    label: str,
) -> None:
    cert_label = f"{label}.certfile" if label != "ssl" else "ssl_certfile"
    key_label = f"{label}.keyfile" if label != "ssl" else "ssl_keyfile"
    _readable(certfile, cert_label)
    if keyfile is not None:
        _readable(keyfile, key_label)
    # Always a password callable: with none, OpenSSL would prompt on the terminal for an
    # encrypted key, which a server must never do.
    given = password or ""
    try:
        context.load_cert_chain(certfile, keyfile, password=lambda: given)
    except ssl.SSLError as exc:
        reason = f"{exc.reason or ''} {exc}".upper()
        where = keyfile or certfile
        if "MISMATCH" in reason:
            raise StartupError(
                f"{key_label}: the key in {where} does not match the certificate in {certfile}"
            ) from None
        if _encrypted(where):
            need = "a wrong password" if password else "no password given"
            raise StartupError(f"{key_label}: the key in {where} is encrypted and {need}") from None
        raise StartupError(
            f"{cert_label}: cannot load the certificate and key ({certfile}, {where}): "
            f"{exc.reason or exc}"
        ) from None


def _encrypted(path: str) -> bool:
    """Whether a PEM file holds an encrypted key (PKCS#8 or the traditional OpenSSL header)."""
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            text = file.read()
    except OSError:
        return False
    return "BEGIN ENCRYPTED PRIVATE KEY" in text or "Proc-Type: 4,ENCRYPTED" in text


def _load_cas(context: ssl.SSLContext, path: str, label: str) -> None:
    _readable(path, label)
    try:
        context.load_verify_locations(path)
    except ssl.SSLError as exc:
        raise StartupError(f"{label}: cannot load CA certificates from {path}: {exc}") from None


def _set_ciphers(context: ssl.SSLContext, ciphers: str, label: str) -> None:
    try:
        context.set_ciphers(ciphers)
    except ssl.SSLError:
        raise StartupError(f"{label}: no cipher matches {ciphers!r}") from None


def _read_password(path: str, label: str) -> str:
    _readable(path, label)
    with open(path, encoding="utf-8") as file:
        return file.readline().rstrip("\r\n")
