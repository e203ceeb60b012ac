"""``Config.load()``: import the app and pick the implementations the config names."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from appserver.errors import AppLoadError, StartupError
from appserver.http.limits import HeadLimits
from appserver.http.proxy import TrustedProxies
from appserver.runtime.logs import logger
from appserver.runtime.sockets import systemd_assignments
from appserver.runtime.tls import ServerTLS, tls_for_listeners

if TYPE_CHECKING:
    from appserver.config.model import Config


@dataclass(frozen=True)
class Loaded:
    """What ``Config.load()`` built; read through the Config's properties."""

    app: Any
    lifespan_class: type[Any]
    http_protocol_class: type[Any]
    parser_class: type[Any]
    # Whether WebSocket upgrades are taken; the protocol class comes from ws_protocol().
    websockets: bool
    # The factory of the WebSocket protocol class (imported at the first upgrade): travels
    # here so that the HTTP protocol never imports this module (which imports it).
    ws_protocol: Callable[[], type[Any] | None]
    # Built once here, not per connection; None when proxy headers are off.
    trusted_proxies: TrustedProxies | None = None
    # Who may send a PROXY protocol header (proxy.trusted, whether or not proxy.enabled).
    proxy_peers: TrustedProxies = field(default_factory=lambda: TrustedProxies(()))
    head_limits: HeadLimits = field(default_factory=HeadLimits)
    # One per config.listener_configs(): its TLS (context built here, so a bad key fails
    # before lifespan startup), or None.
    tls: list[ServerTLS | None] = field(default_factory=lambda: [None])
    # Listener index -> the file descriptors systemd passed for it (socket activation).
    systemd: dict[int, list[int]] = field(default_factory=dict)
    asgi2: bool = False  # the app is called through ASGI2Middleware

    @property
    def ws_protocol_class(self) -> type[Any] | None:
        return self.ws_protocol() if self.websockets else None


def import_from_string(import_str: str) -> Any:
    """Import "package.module:attr.sub". Raises AppLoadError naming what was not found."""
    module_name, _, attrs = import_str.partition(":")
    if not module_name or not attrs:
        raise AppLoadError(f'app import string {import_str!r} must be "module:attribute"')
    try:
        instance: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # The app's module (or a package above it) is missing, not something it imports:
        # "pkg" missing for "pkg.app" is ours, "miss" missing for "missing_dep" is not.
        missing = exc.name or ""
        if missing == module_name or module_name.startswith(missing + "."):
            raise AppLoadError(
                f"cannot import app {import_str!r}: no module named {module_name!r} in "
                f"{os.getcwd()} or on sys.path (app_dir, APPSERVER_APP_DIR or --app-dir names "
                "the directory that holds it)"
            ) from None
        raise AppLoadError(f"cannot import app {import_str!r}: {exc}{_app_traceback(exc)}") from exc
    except Exception as exc:
        raise AppLoadError(
            f"cannot import app {import_str!r}: importing {module_name!r} raised "
            f"{type(exc).__name__}: {exc}{_app_traceback(exc)}"
        ) from exc
    try:
        for attr in attrs.split("."):
            instance = getattr(instance, attr)
    except AttributeError:
        raise AppLoadError(
            f"cannot import app {import_str!r}: module {module_name!r} has no attribute {attrs!r}"
        ) from None
    return instance


def _app_traceback(exc: BaseException) -> str:
    """The frames of the app's own code where its import failed (importlib's are dropped),
    as uvicorn shows them: the file and line of the mistake."""
    import traceback

    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if "importlib" not in frame.filename and frame.filename != __file__
    ]
    if not frames:
        return ""
    lines = "".join(traceback.format_list(frames)).rstrip("\n")
    return f"\nTraceback (the app's code, most recent call last):\n{lines}"


class ASGI2Middleware:
    """Runs an ASGI 2 app (``app(scope)`` returning ``instance(receive, send)``) as ASGI 3."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        scope["asgi"] = ASGI2_VERSIONS  # as uvicorn: the scope says the version it is called in
        instance = self.app(scope)
        await instance(receive, send)


ASGI2_VERSIONS = {"version": "2.0", "spec_version": "2.4"}


def asgi_signature_problem(app: Any) -> str | None:
    """What is wrong with the signature of the app ``resolve_app`` gave, or None: an ASGI 3
    app is called with (scope, receive, send); an ASGI 2 one (under ASGI2Middleware) with
    (scope), returning the instance that takes (receive, send)."""
    target, wanted, form = app, 3, "(scope, receive, send)"
    if isinstance(app, ASGI2Middleware):
        target, wanted, form = app.app, 1, "(scope) for ASGI 2"
    call: Any = target if inspect.isfunction(target) or inspect.ismethod(target) else None
    if call is None and inspect.isclass(target):
        call = target  # the class itself is called: its __init__ takes the arguments
    if call is None:
        call = getattr(target, "__call__", None)  # noqa: B004 - the method itself
    try:
        parameters = list(inspect.signature(call).parameters.values())
    except (TypeError, ValueError):
        return None  # a builtin or C callable: cannot tell, so do not refuse
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return None
    required = [p for p in positional if p.default is p.empty]
    if len(required) <= wanted <= len(positional):
        return None
    name = getattr(target, "__qualname__", type(target).__name__)
    return f"{name} takes {len(positional)} positional argument(s); an ASGI app takes {form}"


def _is_asgi3(app: Any) -> bool:
    if inspect.isclass(app):
        return hasattr(app, "__await__")
    if inspect.iscoroutinefunction(app):
        return True
    call = getattr(app, "__call__", None)  # noqa: B004 - we need the method itself
    return inspect.iscoroutinefunction(call)


def resolve_app(config: Config) -> Any:
    """The ASGI 3 callable the config names, imported and unwrapped (factory, ASGI 2)."""
    if config.app is None:
        raise AppLoadError('no app configured: set `app` to "module:attribute"')
    if isinstance(config.app, str):
        # Like uvicorn's --app-dir, whose default is the current directory: "examples.hello:app"
        # must import from where the command runs, also from the installed `appserver` script.
        app_dir = os.path.abspath(config.app_dir if config.app_dir is not None else os.getcwd())
        if app_dir not in sys.path:
            sys.path.insert(0, app_dir)
    app = import_from_string(config.app) if isinstance(config.app, str) else config.app
    if config.factory:
        if not callable(app):
            raise AppLoadError(f"app factory {config.app!r} is not callable")
        try:
            app = app()
        except TypeError as exc:
            raise AppLoadError(f"app factory {config.app!r} failed: {exc}") from exc
    if not callable(app):
        raise AppLoadError(f"app {config.app!r} is not callable: {type(app).__name__}")
    interface = config.interface
    if interface == "auto":
        interface = "asgi3" if _is_asgi3(app) else "asgi2"
    return ASGI2Middleware(app) if interface == "asgi2" else app


def _check_interface(config: Config) -> None:
    if config.interface == "wsgi":
        raise AppLoadError(
            'interface = "wsgi" is not supported: appserver serves ASGI apps; wrap a WSGI app '
            "in an ASGI adapter (a2wsgi's WSGIMiddleware, or asgiref's WsgiToAsgi)"
        )


def resolve_parser(http: str) -> type[Any]:
    if http in ("auto", "httptools"):
        try:
            from appserver.http.httptools import HttptoolsParser

            return HttptoolsParser
        except ImportError:
            if http == "httptools":
                raise AppLoadError('http = "httptools" but httptools is not installed') from None
    from appserver.http.h11 import H11Parser

    return H11Parser


def resolve_ws(ws: str) -> bool:
    """Whether WebSocket upgrades are taken (if not, they are served as plain HTTP).

    ``"websockets"`` imports the protocol now, so a missing library fails at startup. ``"auto"``
    only checks that websockets is installed: the protocol, and websockets with it (about
    0.7 MiB), is imported by the first upgrade, so a server that never sees one never pays for
    it. The first upgrade waits for that import (milliseconds), once.
    """
    if ws == "none":
        return False
    if ws in ("websockets-sansio", "wsproto"):
        # uvicorn's other implementations: we have one, which is sans-I/O already.
        logger.info(
            "ws = %r: appserver has one WebSocket implementation (sans-I/O, on the websockets "
            "library); using it",
            ws,
        )
        ws = "websockets"
    if ws == "websockets":
        if ws_protocol() is None:
            raise AppLoadError('ws = "websockets" but websockets is not installed')
        return True
    return importlib.util.find_spec("websockets") is not None


@functools.cache
def ws_protocol() -> type[Any] | None:
    """The WebSocket protocol class, imported on first use; None when websockets cannot be
    imported (with ``ws = "auto"``, upgrades are then served as plain HTTP)."""
    try:
        from appserver.runtime.ws_protocol import WebSocketProtocol
    except Exception as exc:
        # Found at load but broken (cached: said once, not on every upgrade).
        logger.error("WebSockets are off: importing websockets failed: %s", exc)
        return None
    return WebSocketProtocol


def load_env_file(path: str) -> None:
    """uvicorn's env_file: the file's variables into os.environ, for the app (set ones win)."""
    from dotenv import load_dotenv

    if not os.path.isfile(path):
        raise StartupError(f"env_file: {path} does not exist")
    logger.info("Loading environment from '%s'", path)
    load_dotenv(path, override=False)


def load(config: Config) -> Loaded:
    from appserver.runtime.http_protocol import HTTPProtocol
    from appserver.runtime.lifespan import LifespanOff, LifespanOn
    from appserver.runtime.operations import wants_instruments

    # Before the app is imported: the socket-activation variables are unset for it, and a
    # bad certificate or key stops the server before any of the app's code runs.
    systemd = (
        {}
        if config._sockets_inherited
        else systemd_assignments(config.listener_configs(), os.environ, os.getpid())
    )
    tls = tls_for_listeners(config)
    if config.env_file is not None:
        load_env_file(config.env_file)
    _check_interface(config)
    app = resolve_app(config)
    parser = resolve_parser(config.http)
    head_size = config.limit_header_size
    if config.h11_max_incomplete_event_size is not None and parser.__name__ == "H11Parser":
        head_size = config.h11_max_incomplete_event_size
    lifespan = LifespanOff if config.lifespan == "off" else LifespanOn
    protocol: type[Any] = HTTPProtocol
    if wants_instruments(config):
        from appserver.runtime.instrumented import protocol_for

        protocol = protocol_for(config)
    if config.metrics_route is not None:
        check_metrics_available()
    return Loaded(
        app=app,
        lifespan_class=lifespan,
        http_protocol_class=protocol,
        parser_class=parser,
        websockets=resolve_ws(config.ws),
        ws_protocol=ws_protocol,
        trusted_proxies=TrustedProxies(
            config.forwarded_allow_ips, config.forwarded_headers, config.forwarded_host
        )
        if config.proxy_headers
        else None,
        proxy_peers=TrustedProxies(config.forwarded_allow_ips),
        head_limits=HeadLimits(
            request_line=config.limit_request_line,
            header_count=config.limit_header_count,
            field_size=config.limit_header_field_size,
            head_size=head_size,
            body_size=config.limit_body_size,
        ),
        tls=tls,
        systemd=systemd,
        asgi2=isinstance(app, ASGI2Middleware),
    )


def check_metrics_available() -> None:
    """metrics.path needs prometheus-client (the metrics extra): say so before starting."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise StartupError(
            "metrics.path needs prometheus-client: pip install 'appserver[metrics]' "
            "(or prometheus-client)"
        ) from None


# --- uvicorn's Config methods, done here (Config is data: it hands over to the runtime) ------
def bind_socket(config: Config) -> Any:
    """The one socket the flat keywords describe, bound (uvicorn's Config.bind_socket)."""
    from appserver.runtime.sockets import bind_tcp, bind_unix, from_fd

    if config.fd is not None:
        return from_fd(config.fd)
    if config.uds is not None:
        return bind_unix(config.uds)
    return bind_tcp(config.host, config.port)


def get_loop_factory(config: Config) -> Callable[[], Any]:
    from appserver.runtime.loops import loop_factory

    return loop_factory(config.loop)


def setup_event_loop(config: Config) -> None:
    import asyncio

    if config.loop in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if config.loop == "uvloop":
                raise
            return
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def configure_logging(config: Config) -> None:
    from appserver.runtime.logs import configure_logging as configure

    configure(config)
