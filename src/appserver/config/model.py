"""The one definition of every setting.

Each field of :class:`Config` carries everything anyone needs to know about a setting: its
Python keyword (uvicorn's flat name), type, default, bounds and documentation, plus its location
in the TOML file (``json_schema_extra["toml"]``) and, where it has one, its command-line flag.
The environment variable is derived: ``APPSERVER_`` + the keyword in upper case. The README
reference, the JSON Schema, ``appserver check`` and the CLI all read these fields; nothing keeps a
second list.

Config is data. Validation never opens a socket or imports the app; :meth:`Config.load` does
that work (in ``appserver.runtime.loader``) and records what it built.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from appserver.config.listeners import (
    BIND_FORMS,
    ListenerConfig,
    format_tcp,
    listeners_from_text,
    parse_bind,
)
from appserver.config.loadable import Loadable
from appserver.config.problems import config_error
from appserver.config.units import parse_duration, parse_size

if TYPE_CHECKING:
    from appserver.runtime.loader import Loaded

Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]

# The uvicorn keywords that describe the one socket when there is no listeners list.
FLAT_SOCKET_SETTINGS = frozenset(
    (
        "host",
        "port",
        "uds",
        "fd",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_keyfile_password",
        "ssl_version",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ciphers",
        "ssl_context_factory",
    )
)

DEFAULT_RELOAD_INCLUDES = ("*.py",)
DEFAULT_RELOAD_EXCLUDES = (".*", ".py[cod]", ".sw.*", "~*")

# An operations path is matched exactly against the request's path: a plain absolute path.
_OPS_PATH = re.compile(r"^/[^\s?#]*$")
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_FIELD_VALUE = re.compile(rb"^[\x09\x20-\x7e\x80-\xff]*$")
# Framing and hop-by-hop fields: a fixed value would sit beside the real Content-Length on every
# response (and beside Transfer-Encoding: chunked on streamed ones) or contradict the server's
# own keep-alive decision.
_SERVER_OWNED_HEADERS = frozenset(
    (
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-connection",
    )
)


def setting(
    default: Any,
    *,
    toml: str | None,
    doc: str,
    cli: str | None = None,
    expects: str | None = None,
    env: str | None = None,
    **constraints: Any,
) -> Any:
    """Declare a setting. ``toml`` is its dotted path in the file (None: Python only).

    ``expects`` words what the setting accepts when its type alone says too little
    ("an import string ..."); otherwise error messages describe the type and bounds.
    """
    extra: dict[str, Any] = {"toml": toml}
    if cli is not None:
        extra["cli"] = cli
    if expects is not None:
        extra["expects"] = expects
    if env is not None:
        extra["env"] = env  # else APPSERVER_ + the keyword
    return Field(default, description=doc, json_schema_extra=extra, **constraints)


class Config(Loadable, BaseModel):
    """Server configuration; keyword names follow uvicorn's ``Config``."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        arbitrary_types_allowed=True,
        validate_default=False,
    )

    # --- the application -------------------------------------------------------------------
    app: Any = setting(
        None,
        toml="app",
        cli="--app",
        expects='an import string "module:attribute"',
        doc='The ASGI application: an import string "module:attribute" '
        "(or, from Python, the callable itself).",
    )
    factory: bool = setting(
        False,
        toml="factory",
        cli="--factory",
        doc="Treat `app` as a zero-argument factory that returns the application.",
    )
    app_dir: str | None = setting(
        None,
        toml="app_dir",
        cli="--app-dir",
        doc="Directory put first on sys.path before the app is imported (unset: the current directory).",
    )
    env_file: str | None = setting(
        None,
        toml="env_file",
        doc="A .env file loaded into the environment before the app is imported (uvicorn's "
        "env_file; variables already set win). `appserver serve --env-file` sets it too, and "
        "also reads the file's APPSERVER_* settings.",
    )
    interface: Literal["auto", "asgi3", "asgi2", "wsgi"] = setting(
        "auto",
        toml="interface",
        cli="--interface",
        doc="ASGI interface of the app; auto tells ASGI 2 from ASGI 3 by its signature. "
        '"wsgi" (uvicorn\'s WSGI bridge) is refused at load: appserver serves ASGI apps only.',
    )
    lifespan: Literal["auto", "on", "off"] = setting(
        "auto",
        toml="lifespan",
        cli="--lifespan",
        doc="Lifespan protocol: on (failure is fatal), off, or auto (used if the app supports it).",
    )
    root_path: str = setting(
        "",
        toml="root_path",
        cli="--root-path",
        doc="ASGI root_path, for an app mounted below a path prefix by a proxy.",
    )

    # --- sockets and implementation -----------------------------------------------------------
    host: str = setting("127.0.0.1", toml="server.host", cli="--host", doc="Interface to bind to.")
    port: int = setting(
        8000,
        toml="server.port",
        cli="--port",
        doc="TCP port to bind to (0: any free port).",
        ge=0,
        le=65535,
    )
    uds: str | None = setting(
        None, toml="server.uds", cli="--uds", doc="Bind to this Unix domain socket path instead."
    )
    fd: int | None = setting(
        None,
        toml="server.fd",
        cli="--fd",
        doc="Serve on this inherited, already bound file descriptor.",
        ge=0,
    )
    listeners: list[ListenerConfig] | None = setting(
        None,
        toml="listeners",
        cli="--bind",
        env="APPSERVER_BIND",
        expects=f"a list of [[listeners]] tables or bind addresses ({BIND_FORMS})",
        doc="Sockets to listen on: [[listeners]] tables (their keys are in the table below), or "
        "bind addresses from the environment (comma-separated) and --bind (repeatable). "
        "Replaces host/port, uds, fd and ssl_*.",
    )
    ssl_certfile: str | None = setting(
        None,
        toml="server.ssl_certfile",
        cli="--ssl-certfile",
        doc="uvicorn's TLS keyword: PEM certificate file; serves HTTPS on host/port, uds or fd.",
    )
    ssl_keyfile: str | None = setting(
        None, toml="server.ssl_keyfile", cli="--ssl-keyfile", doc="PEM private key file."
    )
    ssl_keyfile_password: str | None = setting(
        None,
        toml="server.ssl_keyfile_password",
        cli="--ssl-keyfile-password",
        doc="Password of an encrypted ssl_keyfile.",
    )
    ssl_version: int = setting(
        int(ssl.PROTOCOL_TLS_SERVER),
        toml="server.ssl_version",
        cli="--ssl-version",
        doc="uvicorn's ssl_version: an ssl.PROTOCOL_* number (default PROTOCOL_TLS_SERVER).",
    )
    ssl_cert_reqs: int = setting(
        int(ssl.CERT_NONE),
        toml="server.ssl_cert_reqs",
        cli="--ssl-cert-reqs",
        doc="Client certificates: 0 none, 1 optional, 2 required (ssl.CERT_*).",
        ge=0,
        le=2,
    )
    ssl_ca_certs: str | None = setting(
        None,
        toml="server.ssl_ca_certs",
        cli="--ssl-ca-certs",
        doc="PEM file of CAs that client certificates must chain to.",
    )
    ssl_ciphers: str | None = setting(
        None,
        toml="server.ssl_ciphers",
        cli="--ssl-ciphers",
        doc="OpenSSL cipher list for TLS 1.2 (unset: Python's secure default, as uvicorn since "
        "0.48).",
    )
    ssl_context_factory: Callable[..., Any] | None = setting(
        None,
        toml=None,
        doc="Python only, as in uvicorn: factory(config, default_factory) -> ssl.SSLContext, "
        "called by load(); default_factory() builds the context from the ssl_* settings.",
    )
    backlog: int = setting(
        2048,
        toml="server.backlog",
        cli="--backlog",
        doc="Listen backlog: connections the kernel queues.",
        ge=1,
    )
    loop: str = setting(
        "auto",
        toml="server.loop",
        cli="--loop",
        expects='"auto", "asyncio", "uvloop", "none" or a loop factory "module:callable"',
        doc="Event loop: auto prefers uvloop when installed; none is asyncio's default; "
        '"module:callable" names a function that returns a new event loop (as uvicorn).',
    )
    http2: bool = setting(
        False,
        toml="server.http2",
        doc="uvicorn's http2 keyword: HTTP/2 is not supported yet, so true is an error.",
    )
    reset_contextvars: bool = setting(
        False,
        toml="server.reset_contextvars",
        doc="Run each request's app call in an empty contextvars context instead of a copy of "
        "the server's (uvicorn's reset_contextvars).",
    )
    http: Literal["auto", "h11", "httptools"] = setting(
        "auto",
        toml="server.http",
        cli="--http",
        doc="HTTP/1.1 parser: auto prefers httptools when installed.",
    )

    # --- processes ---------------------------------------------------------------------------------
    workers: int | None = setting(
        None,
        toml="processes.workers",
        cli="--workers",
        doc="Worker processes under a supervisor that binds the sockets once, restarts workers "
        "that die or hang, and rolls them on SIGHUP (unset: one in-process server).",
        ge=1,
    )
    timeout_worker_healthcheck: Duration = setting(
        5.0,
        toml="processes.healthcheck_timeout",
        cli="--timeout-worker-healthcheck",
        doc="A worker that does not answer the supervisor's ping within this time is killed "
        "and replaced (uvicorn's timeout_worker_healthcheck).",
        gt=0,
    )
    timeout_worker_start: Duration = setting(
        60.0,
        toml="processes.start_timeout",
        cli="--timeout-worker-start",
        doc="How long a new worker may take to be ready (lifespan startup done, accepting); "
        "past it, a rolling restart is aborted and the old workers keep serving.",
        gt=0,
    )

    reload: bool = setting(
        False,
        toml="reload.enabled",
        cli="--reload",
        doc="Development: restart the server when a watched file changes (watchfiles); a "
        "change to the config file is validated first, and an invalid one keeps the server.",
    )
    reload_dirs: list[str] = setting(
        [],
        toml="reload.dirs",
        cli="--reload-dir",
        doc="Directories watched for reload (unset: the current directory).",
    )
    reload_includes: list[str] = setting(
        [],
        toml="reload.includes",
        cli="--reload-include",
        doc="Glob patterns of more files whose changes reload, besides *.py (as uvicorn: a "
        "default is dropped only by naming it in reload.excludes).",
    )
    reload_excludes: list[str] = setting(
        [],
        toml="reload.excludes",
        cli="--reload-exclude",
        doc="Glob patterns of more files (and directories) never watched, besides .*, "
        ".py[cod], .sw.* and ~* (as uvicorn: a default is dropped only by naming it in "
        "reload.includes).",
    )
    reload_delay: Duration = setting(
        0.25,
        toml="reload.delay",
        cli="--reload-delay",
        doc="How long changes are gathered before one reload.",
        gt=0,
    )

    # --- limits ------------------------------------------------------------------------------------
    limit_concurrency: int | None = setting(
        None,
        toml="limits.concurrency",
        cli="--limit-concurrency",
        doc="Answer 503 once this many connections or requests are active.",
        ge=1,
    )
    limit_max_requests: int | None = setting(
        None,
        toml="limits.max_requests",
        cli="--limit-max-requests",
        doc="Exit cleanly after this many responses (a supervisor restarts the process).",
        ge=1,
    )
    limit_max_requests_jitter: int = setting(
        0,
        toml="limits.max_requests_jitter",
        cli="--limit-max-requests-jitter",
        doc="Add a random 0..jitter to limit_max_requests so workers do not restart together.",
        ge=0,
    )
    limit_request_line: Size = setting(
        8 * 1024,
        toml="limits.request_line",
        cli="--limit-request-line",
        doc="Longest request line (method, target, version); longer ones get 414 "
        "(nginx's large_client_header_buffers and gunicorn's limit_request_line: 8 KiB).",
        ge=64,
    )
    limit_header_count: int = setting(
        100,
        toml="limits.header_count",
        cli="--limit-header-count",
        doc="Most header fields in a request; more get 431 "
        "(gunicorn's limit_request_fields and Envoy's max_headers_count: 100).",
        ge=1,
    )
    limit_header_field_size: Size = setting(
        8 * 1024,
        toml="limits.header_field_size",
        cli="--limit-header-field-size",
        doc="Longest header field (name and value); longer ones get 431 "
        "(gunicorn's limit_request_field_size, nginx's per-line buffer: 8 KiB).",
        ge=64,
    )
    limit_header_size: Size = setting(
        64 * 1024,
        toml="limits.header_size",
        cli="--limit-header-size",
        doc="Largest header section (target, names and values together); larger ones get 431 "
        "(Envoy's max_request_headers_kb and h11's default: 64 KiB).",
        ge=256,
    )
    limit_body_size: Size | None = setting(
        None,
        toml="limits.body_size",
        cli="--limit-body-size",
        doc="Largest request body: a larger Content-Length gets 413 before the body is read, a "
        "chunked body is counted as it arrives; the connection closes after the 413 "
        "(unset: no limit; nginx's client_max_body_size).",
        ge=0,
    )
    h11_max_incomplete_event_size: Size | None = setting(
        None,
        toml="limits.h11_max_incomplete_event_size",
        cli="--h11-max-incomplete-event-size",
        doc="uvicorn's h11 keyword: with the h11 parser, the largest request head (it replaces "
        "limits.header_size there).",
        ge=256,
    )
    limit_pipeline: int = setting(
        16,
        toml="limits.pipeline",
        cli="--limit-pipeline",
        doc="Pipelined requests queued on one connection before the server stops reading from it.",
        ge=1,
    )
    limit_keep_alive_requests: int | None = setting(
        1000,
        toml="limits.keep_alive_requests",
        cli="--limit-keep-alive-requests",
        doc="Requests served on one connection; the last one says connection: close "
        "(nginx's keepalive_requests: 1000; unset: no limit).",
        ge=1,
    )

    # --- timeouts ----------------------------------------------------------------------------------
    timeout_keep_alive: Duration = setting(
        5.0,
        toml="timeouts.keep_alive",
        cli="--timeout-keep-alive",
        doc="Close a keep-alive connection idle for this long.",
        gt=0,
    )
    timeout_graceful_shutdown: Duration | None = setting(
        None,
        toml="timeouts.graceful_shutdown",
        cli="--timeout-graceful-shutdown",
        doc="On shutdown, wait this long for in-flight requests before cancelling them "
        "(unset: wait until they finish).",
        ge=0,
    )
    timeout_shutdown_delay: Duration = setting(
        0.0,
        toml="timeouts.shutdown_delay",
        cli="--timeout-shutdown-delay",
        doc="On SIGTERM, keep accepting and serving this long first, with readiness answering "
        "503 and every response saying connection: close, then drain: the server-side form of "
        "Kubernetes' preStop sleep, for the race between endpoint removal and SIGTERM.",
        ge=0,
    )
    timeout_header_read: Duration = setting(
        10.0,
        toml="timeouts.header_read",
        cli="--timeout-header-read",
        doc="Time from a connection's accept, or a request's first byte, to the end of the request "
        "head; then 408 (or a plain close if nothing arrived). Slowloris protection; the CIS "
        "benchmark asks 10 s of nginx's client_header_timeout.",
        gt=0,
    )
    timeout_body_read: Duration = setting(
        60.0,
        toml="timeouts.body_read",
        cli="--timeout-body-read",
        doc="Longest gap between two reads of a request body while the app waits for it; "
        "then 408 and close (nginx's client_body_timeout: 60 s).",
        gt=0,
    )
    timeout_write: Duration = setting(
        60.0,
        toml="timeouts.write",
        cli="--timeout-write",
        doc="Longest a client may leave unread what the server has to send; then the "
        "connection closes (nginx's send_timeout: 60 s).",
        gt=0,
    )
    timeout_websocket_close: Duration = setting(
        10.0,
        toml="timeouts.websocket_close",
        cli="--timeout-websocket-close",
        doc="How long a WebSocket peer has to answer the server's close frame before the TCP "
        "connection is dropped (the websockets library's close_timeout: 10 s).",
        gt=0,
    )
    timeout_notify: Duration = setting(
        30.0,
        toml="timeouts.notify",
        doc="Interval between calls of callback_notify.",
        gt=0,
    )
    callback_notify: Callable[[], Any] | None = setting(
        None,
        toml=None,
        doc="Python only: an async callable run every timeout_notify seconds (a liveness ping).",
    )

    # --- response headers --------------------------------------------------------------------------
    server_header: bool = setting(
        True, toml="headers.server", cli="--server-header", doc="Send `server: appserver`."
    )
    date_header: bool = setting(
        True, toml="headers.date", cli="--date-header", doc="Send a `date` header."
    )
    headers: list[tuple[str, str]] = setting(
        [],
        toml="headers.custom",
        cli="--header",
        expects='a table {name = "value"} or a list of "name: value" strings',
        doc='Extra response headers: a table {name = "value"}, or "name: value" strings.',
    )

    # --- proxies -----------------------------------------------------------------------------------
    proxy_headers: bool = setting(
        True,
        toml="proxy.enabled",
        cli="--proxy-headers",
        doc="Take the client address, scheme and host from a trusted proxy's headers "
        "(proxy.headers says which).",
    )
    forwarded_allow_ips: list[str] = setting(
        ["127.0.0.1"],
        toml="proxy.trusted",
        cli="--forwarded-allow-ips",
        expects='a list of IP addresses, CIDR networks or "*"',
        doc="Proxies trusted for their forwarding headers and PROXY protocol headers: IPs, CIDR "
        'networks, or "*" for all.',
    )

    forwarded_headers: Literal["x-forwarded", "forwarded"] = setting(
        "x-forwarded",
        toml="proxy.headers",
        cli="--forwarded-headers",
        doc='Which headers the trusted proxies set, the only ones read: "x-forwarded" '
        "(X-Forwarded-For, -Proto, -Host, -Port: nginx, HAProxy, most load balancers) or "
        '"forwarded" (RFC 7239 Forwarded: for, proto, host). The other family is ignored, so a '
        "client cannot smuggle values through headers the proxy passes on untouched.",
    )

    forwarded_host: bool = setting(
        False,
        toml="proxy.host",
        cli="--forwarded-host",
        doc="Also take the host and port the client asked for from X-Forwarded-Host/-Port (or "
        "Forwarded host=). Only when every trusted proxy sets or strips them: a proxy passes "
        "on what it does not set, and then the client chooses the Host the app sees (nginx's "
        "usual proxy_set_header lines set X-Forwarded-For and -Proto only).",
    )

    # --- operations --------------------------------------------------------------------------------
    health_path: str | None = setting(
        None,
        toml="health.path",
        cli="--health-path",
        doc='Answer 200 here while the process is up (liveness), before the app (e.g. "/healthz"; '
        "unset: off).",
    )
    readiness_path: str | None = setting(
        None,
        toml="health.readiness_path",
        cli="--readiness-path",
        doc="Answer 200 here once lifespan startup completed, 503 from the moment a drain begins "
        '(e.g. "/readyz"; unset: off).',
    )
    health_bind: str | None = setting(
        None,
        toml="health.bind",
        cli="--health-bind",
        doc="Serve the health, readiness and metrics paths on this listener of their own (and "
        "never the app there) instead of on the app's listeners.",
    )
    health_access_log: bool = setting(
        False,
        toml="health.access_log",
        cli="--health-access-log",
        doc="Write the health, readiness and metrics requests to the access log too.",
    )
    metrics_path: str | None = setting(
        None,
        toml="metrics.path",
        cli="--metrics-path",
        doc='Serve Prometheus metrics at this path (e.g. "/metrics"; "/metrics" when only '
        "metrics.bind is set; unset: off). Needs prometheus-client (the metrics extra).",
    )
    metrics_bind: str | None = setting(
        None,
        toml="metrics.bind",
        cli="--metrics-bind",
        doc="Serve the metrics (and the health paths) on this listener of their own, never the "
        "app there.",
    )

    # --- logging -----------------------------------------------------------------------------------
    log_level: LogLevel = setting(
        "info", toml="logging.level", cli="--log-level", doc="Lowest level of log records shown."
    )
    access_log: bool = setting(
        True,
        toml="logging.access_log",
        cli="--access-log",
        doc="Log one line per response. The lines follow logging.level as uvicorn's do "
        "(warning hides them) unless access_log = true is set explicitly.",
    )
    access_log_format: str = setting(
        "text",
        toml="logging.access_format",
        cli="--access-log-format",
        expects='"text", "json" or a template like "{client} {method} {path} {status}"',
        doc='"text" (one line, as uvicorn), "json" (one object per line) or a template of named '
        "fields in braces (client, method, path, query, status, bytes, duration_ms, "
        "http_version, request_id, user_agent, referer, time).",
    )
    log_format: Literal["text", "json"] = setting(
        "text",
        toml="logging.format",
        cli="--log-format",
        doc='The error log: "text" lines or "json" objects (time, level, logger, message).',
    )
    request_id_header: str | None = setting(
        None,
        toml="logging.request_id_header",
        cli="--request-id-header",
        doc='Take a request id from this request header (e.g. "x-request-id") when well-formed '
        "(1-128 of A-Z a-z 0-9 - _ . : / + =), else generate one; it goes to the access log "
        "(unset: off).",
    )
    request_id_echo: bool = setting(
        False,
        toml="logging.request_id_echo",
        cli="--request-id-echo",
        doc="Send the request id back in the request_id_header response header.",
    )
    use_colors: bool | None = setting(
        None,
        toml="logging.use_colors",
        cli="--use-colors",
        doc="Colour the level names of the default log format (unset: when writing to a "
        "terminal), as uvicorn.",
    )
    log_config: dict[str, Any] | str | None = setting(
        "default",
        toml="logging.config",
        cli="--log-config",
        expects='"default", "none", a logging config file path or a dictConfig table',
        doc='"default" (appserver\'s console logging), a logging config file (.json or .ini), '
        "a dictConfig mapping, or none to leave the handlers as the program set them up (the "
        "levels still follow log_level, as uvicorn's).",
    )

    # --- websockets --------------------------------------------------------------------------------
    ws: Literal["auto", "websockets", "websockets-sansio", "wsproto", "none"] = setting(
        "auto",
        toml="websocket.protocol",
        cli="--ws",
        doc="WebSocket support: none disables it; every other value means appserver's one "
        "implementation (sans-I/O, on the websockets library); uvicorn's websockets-sansio and "
        "wsproto are accepted and say so once at startup.",
    )
    ws_max_size: Size = setting(
        16 * 1024 * 1024,
        toml="websocket.max_size",
        cli="--ws-max-size",
        doc="Largest incoming WebSocket message; larger ones close the connection with 1009.",
        ge=1,
    )
    ws_max_queue: int = setting(
        32,
        toml="websocket.max_queue",
        cli="--ws-max-queue",
        doc="Incoming messages buffered for the app before reading pauses.",
        ge=1,
    )
    ws_ping_interval: Duration | None = setting(
        20.0,
        toml="websocket.ping_interval",
        cli="--ws-ping-interval",
        doc="Send a ping this often (unset: never).",
        gt=0,
    )
    ws_ping_timeout: Duration | None = setting(
        20.0,
        toml="websocket.ping_timeout",
        cli="--ws-ping-timeout",
        doc="Close with 1011 when a ping is not answered within this time (unset: wait forever).",
        gt=0,
    )
    ws_per_message_deflate: bool = setting(
        True,
        toml="websocket.per_message_deflate",
        cli="--ws-per-message-deflate",
        doc="Offer the permessage-deflate compression extension.",
    )

    _loaded: Loaded | None = PrivateAttr(default=None)
    # Set in a worker process: its supervisor bound the sockets (and took systemd's).
    _sockets_inherited: bool = PrivateAttr(default=False)
    # Set in a worker process: where the workers leave their metrics for each other.
    _metrics_dir: str | None = PrivateAttr(default=None)

    def __init__(self, app: Any = None, /, **data: Any) -> None:
        # uvicorn accepts the app positionally: Config(app, port=...).
        if app is not None:
            data["app"] = app
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise config_error(exc, type(self)) from None

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise config_error(exc, type(self)) from None

    # --- validators --------------------------------------------------------------------------------
    @field_validator("app")
    @classmethod
    def _check_app(cls, value: Any) -> Any:
        if isinstance(value, str):
            module, sep, attr = value.partition(":")
            if not sep or not module or not attr:
                raise ValueError(f'expected an import string "module:attribute", got {value!r}')
        elif value is not None and not callable(value):
            raise ValueError('expected an import string "module:attribute" or an ASGI callable')
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            # uvicorn takes logging.INFO as well as "info".
            names = {
                50: "critical",
                40: "error",
                30: "warning",
                20: "info",
                10: "debug",
                5: "trace",
            }
            if value not in names:
                raise ValueError(f"expected a level name or one of {sorted(names)}, got {value}")
            return names[value]
        return value.lower() if isinstance(value, str) else value

    @field_validator("loop")
    @classmethod
    def _check_loop(cls, value: str) -> str:
        if value in ("auto", "asyncio", "uvloop", "none"):
            return value
        module, sep, attr = value.partition(":")
        if not sep or not module or not attr:
            raise ValueError(
                'expected "auto", "asyncio", "uvloop", "none" or a loop factory '
                f'"module:callable", got {value!r}'
            )
        return value

    @field_validator("http2")
    @classmethod
    def _no_http2(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "HTTP/2 is not supported yet: appserver speaks HTTP/1.1 (with TLS, ALPN offers "
                "http/1.1 only); remove http2 or set it false"
            )
        return value

    @field_validator("log_config", mode="before")
    @classmethod
    def _none_log_config(cls, value: Any) -> Any:
        # TOML and environment variables cannot say None.
        return None if isinstance(value, str) and value.lower() in ("none", "") else value

    @field_validator("headers", mode="before")
    @classmethod
    def _split_headers(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return [(str(k), str(v)) for k, v in value.items()]
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list | tuple):
            pairs: list[Any] = []
            for item in value:
                if isinstance(item, str):
                    name, sep, val = item.partition(":")
                    if not sep:
                        raise ValueError(f'expected "name: value", got {item!r}')
                    pairs.append((name.strip(), val.strip()))
                else:
                    pairs.append(item)
            return pairs
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: list[tuple[str, str]]) -> list[tuple[str, str]]:
        # Every bad entry is reported on its own, at its own key (problems.config_error reads
        # ``entries``): a table of ten headers with two typos gets two lines, not one.
        entries: list[tuple[str, str, str]] = []  # (name, value as written, what is wrong)
        for name, val in value:
            if not _TOKEN.match(name.encode("latin-1", "replace")):
                entries.append((name, val, "expected a header name that is an HTTP token"))
            elif name.lower() in _SERVER_OWNED_HEADERS:
                entries.append(
                    (
                        name,
                        val,
                        "cannot be set here: the server frames each response and manages the "
                        "connection itself (RFC 9110 §7.6.1, RFC 9112 §6)",
                    )
                )
            if not _FIELD_VALUE.match(val.encode("latin-1", "replace")):
                entries.append((name, val, "expected a value without control characters"))
        if entries:
            raise PydanticCustomError(
                "entries",
                "; ".join(f"header {name!r}: {why}" for name, _, why in entries),
                {"entries": entries},
            )
        return value

    @field_validator("forwarded_allow_ips", mode="before")
    @classmethod
    def _split_ips(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _check_ips(cls, value: list[str]) -> list[str]:
        for item in value:
            if item == "*":
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f'{item!r} is not an IP address, a CIDR network or "*"') from None
        return value

    @field_validator("health_path", "readiness_path", "metrics_path")
    @classmethod
    def _check_path(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _OPS_PATH.match(value):
            raise ValueError(
                f'expected a path starting with "/" (no query, spaces or "#"), got {value!r}'
            )
        return value

    @field_validator("health_bind", "metrics_bind")
    @classmethod
    def _check_ops_bind(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parse_bind(value)
        return value.strip()

    @field_validator("access_log_format")
    @classmethod
    def _check_access_format(cls, value: str) -> str:
        if value in ("text", "json"):
            return value
        from appserver.config.logformat import template_problem

        problem = template_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("request_id_header")
    @classmethod
    def _check_request_id_header(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _TOKEN.match(value.encode("latin-1", "replace")):
            raise ValueError(f"expected a header name (an HTTP token), got {value!r}")
        return value.lower()

    @field_validator("listeners", mode="before")
    @classmethod
    def _bind_strings(cls, value: Any) -> Any:
        return listeners_from_text(value)

    @model_validator(mode="after")
    def _check_sockets(self) -> Config:
        if self.uds is not None and self.fd is not None:
            raise ValueError("uds and fd are exclusive: set one socket source")
        if self.listeners is not None:
            flat = sorted(FLAT_SOCKET_SETTINGS & self.model_fields_set)
            if flat:
                raise ValueError(
                    f"listeners and {', '.join(flat)} are exclusive: write the address as a "
                    'bind ("HOST:PORT", "unix:PATH", "fd://N") and TLS as [listeners.tls], or '
                    "drop listeners"
                )
            if not self.listeners:
                raise ValueError("listeners is empty: give at least one bind address")
        elif self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("ssl_keyfile needs ssl_certfile")
        if self.health_bind is not None and not self.ops_paths:
            raise ValueError(
                "health.bind serves nothing: set health.path, health.readiness_path or "
                "metrics.path too"
            )
        paths = [p for p in (self.health_path, self.readiness_path, self.metrics_route) if p]
        if len(set(paths)) < len(paths):
            raise ValueError("health.path, health.readiness_path and metrics.path must differ")
        return self

    # --- listeners ---------------------------------------------------------------------------
    def listener_configs(self) -> list[ListenerConfig]:
        """Every socket to listen on: ``listeners``, or the one the flat keywords describe
        (its TLS, if any, comes from the ssl_* keywords at load(), uvicorn's way), then the
        operations listeners of health_bind and metrics_bind (one when they are the same)."""
        if self.listeners is not None:
            found = list(self.listeners)
        else:
            if self.fd is not None:
                bind = f"fd://{self.fd}"
            elif self.uds is not None:
                bind = f"unix:{self.uds}"
            else:
                bind = format_tcp(self.host, self.port)
            found = [ListenerConfig(bind=bind)]
        for ops_bind in dict.fromkeys(b for b in (self.health_bind, self.metrics_bind) if b):
            found.append(ListenerConfig(bind=ops_bind, serves="ops"))
        return found

    # --- reload ------------------------------------------------------------------------------
    @property
    def reload_patterns(self) -> tuple[list[str], list[str]]:
        """The include and exclude globs in effect: uvicorn's defaults (``*.py``; ``.*``,
        ``.py[cod]``, ``.sw.*``, ``~*``) plus the configured ones, a default dropped when the
        other list names it (uvicorn's FileFilter)."""
        includes = [p for p in DEFAULT_RELOAD_INCLUDES if p not in self.reload_excludes]
        includes += [p for p in self.reload_includes if p not in includes]
        excludes = [p for p in DEFAULT_RELOAD_EXCLUDES if p not in self.reload_includes]
        excludes += [p for p in self.reload_excludes if p not in excludes]
        return includes, excludes

    # --- operations --------------------------------------------------------------------------
    @property
    def metrics_route(self) -> str | None:
        """Where metrics are served: metrics_path, or /metrics when only metrics_bind is set."""
        if self.metrics_path is None and self.metrics_bind is not None:
            return "/metrics"
        return self.metrics_path

    @property
    def ops_paths(self) -> bool:
        """Some operations endpoint (health, readiness, metrics) is configured."""
        return bool(self.health_path or self.readiness_path or self.metrics_route)

    @property
    def should_reload(self) -> bool:
        """uvicorn's attribute: reload is on and the app is an import string."""
        return isinstance(self.app, str) and self.reload

    def bind_socket(self) -> Any:
        """uvicorn's method: bind the socket host/port, uds or fd describe, and return it."""
        from appserver.runtime.loader import bind_socket

        return bind_socket(self)

    def setup_event_loop(self) -> None:
        """uvicorn's (pre-0.36) method: make ``asyncio.new_event_loop()`` give this config's
        loop (uvloop's policy for "auto"/"uvloop" when installed)."""
        from appserver.runtime.loader import setup_event_loop

        setup_event_loop(self)

    def get_loop_factory(self) -> Any:
        """uvicorn's (0.36+) method: the callable that makes this config's event loop."""
        from appserver.runtime.loader import get_loop_factory

        return get_loop_factory(self)

    def configure_logging(self) -> None:
        """uvicorn's method: set up logging from log_config, log_level, access_log, use_colors."""
        from appserver.runtime.loader import configure_logging

        configure_logging(self)

    @property
    def is_ssl(self) -> bool:
        """uvicorn's attribute: whether any listener serves TLS."""
        if self.listeners is not None:
            return any(listener.tls is not None for listener in self.listeners)
        return bool(self.ssl_certfile or self.ssl_keyfile or self.ssl_context_factory)

    # --- layered sources ---------------------------------------------------------------------
    @classmethod
    def from_sources(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        env_file: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Config:
        """Build a Config from defaults < TOML ``path`` < ``env_file`` < ``environ`` < ``overrides``.

        ``environ`` is a mapping (pass ``os.environ`` for the process environment; None reads
        none). ``overrides`` are keyed by Python keyword or TOML path. Raises
        :class:`~appserver.errors.ConfigError` listing every problem, each naming its source.
        ``APPSERVER_*`` variables that match no setting are ignored here; ``appserver check``
        reports them (see :func:`appserver.config.sources.load`).
        """
        from appserver.config.sources import load

        return load(path, env_file=env_file, environ=environ, overrides=overrides).unwrap()

    @property
    def encoded_headers(self) -> list[tuple[bytes, bytes]]:
        """Custom headers as byte pairs, names lower-cased."""
        return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]
