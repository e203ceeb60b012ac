"""The command line: ``appserver serve``, ``appserver check``, ``appserver schema``.

The flags for individual settings are not declared here: :func:`_with_setting_flags` builds
them from the ``cli=`` metadata of each setting in :mod:`appserver.config.model`, so a new
setting gets its flag, help text and environment variable from its one definition. Every flag
value is handed to the layering code as text, where it is decoded and validated exactly like an
environment variable, so a bad flag gets the same message shape as a bad variable.

Checking never binds a socket, and never imports the app (or uvloop/httptools) unless asked.
"""

# No ``from __future__ import annotations``: Typer reads these annotations at runtime, and the
# generated signature mixes them with real objects.

import functools
import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from pydantic import BaseModel

from appserver.config.settings import SETTINGS, Setting
from appserver.config.sources import Layer, Resolved, layers_for, overrides_layer, resolve
from appserver.errors import _MISSING, SettingError, _literal

if TYPE_CHECKING:
    from appserver.config.model import Config

cli = typer.Typer(
    name="appserver",
    help="A fast, hardened ASGI server configured declaratively.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

FLAG_SETTINGS: tuple[Setting, ...] = tuple(s for s in SETTINGS if s.cli is not None)


def _metavar(setting: Setting) -> str:
    """What the flag's value is, for --help: INTEGER, SECONDS, SIZE, [a|b|c], TEXT."""
    import typing

    from appserver.config.units import parse_duration, parse_size

    funcs = {getattr(m, "func", None) for m in setting.info.metadata}
    for arg in typing.get_args(setting.info.annotation):  # Size | None keeps its Annotated
        funcs |= {getattr(m, "func", None) for m in getattr(arg, "__metadata__", ())}
    if parse_duration in funcs:
        return "SECONDS"
    if parse_size in funcs:
        return "SIZE"
    args = [a for a in typing.get_args(setting.info.annotation) if a is not type(None)]
    base = args[0] if len(args) == 1 else setting.info.annotation
    if typing.get_origin(base) is typing.Literal:
        return "[" + "|".join(str(a) for a in typing.get_args(base)) + "]"
    if base is int:
        return "INTEGER"
    if base is float:
        return "NUMBER"
    return "TEXT"


def _default_text(setting: Setting) -> str:
    value = setting.default
    if value is None or value == [] or callable(value):
        return ""
    shown = ", ".join(map(str, value)) if isinstance(value, list) else value
    if isinstance(value, bool):
        shown = "on" if value else "off"
    return f" [default: {shown}]"


def _flag_annotation(setting: Setting) -> Any:
    assert setting.cli is not None
    help_text = f"{setting.doc}{_default_text(setting)} [{setting.toml}; {setting.env}]"
    if setting.is_bool:
        negative = "--no-" + setting.cli.removeprefix("--")
        option = typer.Option(f"{setting.cli}/{negative}", help=help_text, show_default=False)
        return Annotated[Optional[bool], option]  # noqa: UP045 - Typer needs the typing form
    metavar = _metavar(setting)
    if setting.is_list:
        option = typer.Option(
            setting.cli, help=help_text + " (repeatable)", show_default=False, metavar=metavar
        )
        return Annotated[Optional[list[str]], option]  # noqa: UP045
    # Taken as a list only to tell a flag given twice (an error) from one given once.
    option = typer.Option(setting.cli, help=help_text, show_default=False, metavar=metavar)
    return Annotated[Optional[list[str]], option]  # noqa: UP045


def _with_setting_flags(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add one option per setting with a ``cli`` flag; they reach ``func`` as ``flags``."""
    own = [p for p in inspect.signature(func).parameters.values() if p.name != "flags"]
    generated = [
        inspect.Parameter(
            s.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=_flag_annotation(s)
        )
        for s in FLAG_SETTINGS
    ]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        flags = {s.cli: kwargs.pop(s.name) for s in FLAG_SETTINGS}
        for setting in FLAG_SETTINGS:
            value = flags[setting.cli]
            if setting.is_bool or setting.is_list or not value:
                continue
            if len(value) > 1:  # click would keep the last one, silently
                raise typer.BadParameter(
                    f"given {len(value)} times ({', '.join(map(repr, value))}); give it once",
                    param_hint=setting.cli,
                )
            flags[setting.cli] = value[0]
        return func(flags={k: v for k, v in flags.items() if v not in (None, [])}, **kwargs)

    wrapper.__signature__ = inspect.Signature([*own, *generated])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in (*own, *generated)}
    return wrapper


def _flags_layer(flags: dict[str, Any], assignments: list[str]) -> Layer:
    """``--set key.path=value`` first, then the named flags (which win over --set)."""
    by_flag = {s.cli: s for s in FLAG_SETTINGS}
    layer = Layer("flag")
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            layer.errors.append(
                SettingError(
                    (),
                    item,
                    'expected "key.path=value", e.g. limits.concurrency=100',
                    None,
                    "--set",
                )
            )
            continue
        _merge(layer, overrides_layer({key.strip(): value}, kind="flag"))
    for flag, value in flags.items():
        setting = by_flag[flag]
        if isinstance(value, bool):
            text = "true" if value else "false"
            flag = flag if value else "--no-" + flag.removeprefix("--")
        elif isinstance(value, list):
            text = json.dumps([piece for item in value for piece in _pieces(setting, item)])
        else:
            text = value
        _merge(layer, overrides_layer({setting.name: text}, kind="flag"), spelled=flag)
    return layer


def _pieces(setting: Setting, item: str) -> list[str]:
    # `--header "x-a: 1"` is one header even if its value has a comma; IP lists split on commas.
    if setting.name == "headers" or item.strip()[:1] in ("[", "{"):
        return [item]
    return [piece.strip() for piece in item.split(",") if piece.strip()]


def _merge(layer: Layer, other: Layer, spelled: str | None = None) -> None:
    from dataclasses import replace

    for name, value in other.values.items():
        origin = other.origins[name]
        layer.set(name, value, replace(origin, spelled=spelled) if spelled else origin)
    for error in other.errors:
        layer.errors.append(replace(error, spelled=spelled) if spelled else error)


def _module_exists(module: str, app_dir: str | None) -> bool:
    import importlib.util
    import sys

    directory = os.path.abspath(app_dir or os.getcwd())
    added = directory not in sys.path
    if added:
        sys.path.insert(0, directory)
    try:
        # The top-level name only: finding "pkg.main" would import (run) pkg/__init__.py, and
        # the app is imported by the server (under a supervisor, by each worker), not here.
        return importlib.util.find_spec(module.partition(".")[0]) is not None
    except (ImportError, ValueError):
        return False  # a parent package that does not exist, or a relative name
    finally:
        if added:
            sys.path.remove(directory)


def _is_import_string(argument: Path) -> bool:
    """``module:attribute`` that is not a file (a TOML file is never named that way)."""
    text = str(argument)
    module, sep, attr = text.partition(":")
    return bool(sep and module and attr) and "/" not in text and not argument.exists()


def _resolve(
    path: Path | None, env_file: Path | None, flags: dict[str, Any], assignments: list[str]
) -> Resolved:
    layers = layers_for(path, env_file=env_file, environ=dict(os.environ))
    layers.append(_flags_layer(flags, assignments))
    resolved = resolve(layers)
    if resolved.config is not None and resolved.config.app is None:
        resolved.errors.append(
            SettingError(
                ("app",),
                _MISSING,
                'required: set app = "module:attribute" in the file, APPSERVER_APP or --app',
                None,
                "app",
            )
        )
        resolved.config = None
    return resolved


def _resolve_served(
    path: Path | None, env_file: Path | None, flags: dict[str, Any], assignments: list[str]
) -> Resolved:
    """``_resolve`` for a server, at start and on SIGHUP alike: ``--env-file``'s path is kept on
    the config, so its other variables reach the app's environment (uvicorn's env_file).
    ``check`` shows the sources as they are, without it."""
    resolved = _resolve(path, env_file, flags, assignments)
    if resolved.config is not None and env_file is not None and resolved.config.env_file is None:
        resolved.config.env_file = str(env_file)
    return resolved


def _print_problems(errors: list[SettingError], label: str) -> None:
    count = len(errors)
    typer.echo(f"{label}: invalid configuration ({count} problem{'s' * (count != 1)}):", err=True)
    for error in errors:
        typer.echo(f"  {error}", err=True)


# --- common options --------------------------------------------------------------------------------
EnvFile = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--env-file", help=".env file (python-dotenv format) with APPSERVER_* settings."),
]
SetOption = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option(
        "--set", metavar="KEY.PATH=VALUE", help="Set any setting by its TOML path (repeatable)."
    ),
]


def _version(value: bool) -> None:
    if value:
        from appserver import __version__, _accel

        typer.echo(f"appserver {__version__} (HTTP core: {_accel.describe()})")
        raise typer.Exit()


@cli.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """A fast, hardened ASGI server configured declaratively."""


@cli.command()
@_with_setting_flags
def serve(
    config: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Argument(
            help="TOML configuration file, or an import string module:attribute (as uvicorn).",
            show_default=False,
        ),
    ] = None,
    env_file: EnvFile = None,
    set_: SetOption = None,
    flags: dict[str, Any] | None = None,
) -> None:
    """Serve the app from defaults < CONFIG < --env-file < APPSERVER_* < flags.

    CONFIG may also be an import string, as with uvicorn: `appserver serve myapp:app`.
    """
    flags = dict(flags or {})
    if config is not None and _is_import_string(config):
        module = str(config).partition(":")[0]
        if not _module_exists(module, flags.get("--app-dir")):
            typer.echo(
                f"appserver: {str(config)!r} is neither a file nor an importable module: no file "
                f"named {str(config)!r} and no module named {module.partition('.')[0]!r} in "
                f"{os.getcwd()} "
                "(a config file path, or an import string module:attribute; --app-dir names "
                "where the module is)",
                err=True,
            )
            raise typer.Exit(1)
        flags.setdefault("--app", str(config))  # uvicorn's `uvicorn myapp:app`
        config = None
    resolved = _resolve_served(config, env_file, flags, set_ or [])
    if resolved.config is None:
        _print_problems(resolved.errors, str(config) if config else "appserver")
        raise typer.Exit(1)
    for warning in resolved.unknown:
        typer.echo(f"warning: {warning}", err=True)
    app = resolved.config.app
    if isinstance(app, str) and not _module_exists(app.partition(":")[0], resolved.config.app_dir):
        # Said here, where it is known where the app string came from (an env-only deploy
        # started from another directory is the usual case).
        origin = resolved.origin("app")
        where = {"file": origin.where, "default": "the default"}.get(origin.kind) or str(origin)
        searched = os.path.abspath(resolved.config.app_dir or os.getcwd())
        typer.echo(
            f"appserver: cannot import app {app!r} (from {where}): no module named "
            f"{app.partition(':')[0].partition('.')[0]!r} in {searched} or on sys.path; set app_dir "
            "(APPSERVER_APP_DIR, --app-dir) to the directory that holds it",
            err=True,
        )
        raise typer.Exit(1)
    from appserver.serving import Sources, exec_serving

    sources = Sources(config, env_file, flags, set_ or [])
    if resolved.config.workers is not None or resolved.config.reload:
        from appserver.supervisor import run_supervised

        watched = [str(path) for path in (config, env_file) if path is not None]
        run_supervised(resolved.config, sources.reread, watched)
        return
    exec_serving(resolved.config, sources)  # returns only when it serves here instead
    from appserver.server import Server

    server = Server(resolved.config)
    server.reread = sources.reread  # SIGHUP: certificates reloaded in place
    server.run()


def reread(
    config: Optional[Path],  # noqa: UP045
    env_file: Optional[Path],  # noqa: UP045
    flags: dict[str, Any],
    assignments: list[str],
) -> "Config":
    """SIGHUP: the same sources again (the file, the .env file, the environment now, the same
    flags); a ConfigError lists every problem."""
    from appserver.errors import ConfigError

    again = _resolve_served(config, env_file, flags, assignments)
    if again.config is None:
        raise ConfigError(again.errors)
    return again.config


@cli.command()
@_with_setting_flags
def check(
    configs: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Argument(help="TOML configuration files to check.", show_default=False),
    ] = None,
    env_file: EnvFile = None,
    set_: SetOption = None,
    import_app: Annotated[
        bool, typer.Option("--import-app", help="Also import the app and check it is ASGI.")
    ] = False,
    print_: Annotated[
        bool,
        typer.Option("--print", help="Show every effective value and where it came from."),
    ] = False,
    output_format: Annotated[
        str, typer.Option("--format", help="Output format: text or json.", metavar="text|json")
    ] = "text",
    flags: dict[str, Any] | None = None,
) -> None:
    """Validate configuration without binding sockets (or importing the app unless asked)."""
    if output_format not in ("text", "json"):
        raise typer.BadParameter("expected text or json", param_hint="--format")
    results = []
    paths: list[Path | None] = list(configs) if configs else [None]
    for path in paths:
        label = str(path) if path else "(no file)"
        resolved = _resolve(path, env_file, flags or {}, set_ or [])
        # An unknown APPSERVER_* variable is a warning to serve but an error here: check exists
        # to catch a typo before it silently does nothing in production.
        resolved.errors.extend(resolved.unknown)
        warnings: list[str] = []
        if resolved.config is not None and not resolved.errors:
            tls_problem, warnings = _check_tls(resolved.config)
            if tls_problem is not None:
                resolved.errors.append(tls_problem)
            resolved.errors.extend(_check_runtime(resolved))
        if import_app and resolved.config is not None and not resolved.errors:
            problem = _import_app(resolved)
            if problem is not None:
                resolved.errors.append(problem)
                resolved.config = None
        results.append((label, resolved, warnings))
    valid = all(not r.errors and r.config is not None for _, r, _ in results)
    if output_format == "json":
        report = {"valid": valid, "results": [_json_result(*result) for result in results]}
        typer.echo(json.dumps(report, indent=2))
    else:
        for label, resolved, warnings in results:
            for warning in warnings:
                typer.echo(f"{label}: warning: {warning}", err=True)
            if resolved.errors or resolved.config is None:
                _print_problems(resolved.errors, label)
                continue
            typer.echo(f"{label}: ok")
            if print_:
                _print_settings(resolved)
    raise typer.Exit(0 if valid else 1)


def _check_tls(config: Any) -> tuple[SettingError | None, list[str]]:
    """Build every listener's SSL context (files exist and are readable, the key opens and
    matches its certificate) and list certificates that expire soon; nothing is bound."""
    from appserver.errors import StartupError
    from appserver.runtime.tls import expiry_warnings, tls_for_listeners

    if not config.is_ssl:
        return None, []
    try:
        tls_for_listeners(config)
    except StartupError as exc:
        return SettingError((), _MISSING, str(exc), None, ""), expiry_warnings(config)
    return None, expiry_warnings(config)


def _check_runtime(resolved: Resolved) -> list[SettingError]:
    """What serve would find only when it starts: the logging config file (exists, parses
    by its suffix, dictConfig or fileConfig accepts it) and metrics' prometheus-client."""
    from appserver.errors import StartupError
    from appserver.runtime.loader import check_metrics_available
    from appserver.runtime.logs import log_config_problem

    config = resolved.config
    assert config is not None
    found = []
    source = config.log_config
    if source is not None and source != "default":
        problem = log_config_problem(source)
        if problem is not None:
            origin = resolved.origin("log_config")
            found.append(
                SettingError(("log_config",), source, problem, origin.where, origin.spelled)
            )
    if config.metrics_route is not None:
        try:
            check_metrics_available()
        except StartupError as exc:
            origin = resolved.origin("metrics_path")
            found.append(SettingError(("metrics_path",), _MISSING, str(exc), origin.where, ""))
    return found


def _import_app(resolved: Resolved) -> SettingError | None:
    from appserver.errors import AppLoadError
    from appserver.runtime.loader import asgi_signature_problem, resolve_app

    assert resolved.config is not None
    try:
        app = resolve_app(resolved.config)
        problem = asgi_signature_problem(app)
        if problem is not None:
            raise AppLoadError(f"app {resolved.config.app!r} is not an ASGI app: {problem}")
    except AppLoadError as exc:
        origin = resolved.origin("app")
        return SettingError(("app",), resolved.config.app, str(exc), origin.where, "app")
    except Exception as exc:  # the app's own import-time failure must not become a traceback
        return SettingError(
            ("app",), resolved.config.app, f"importing the app raised {exc!r}", None, "app"
        )
    return None


def _effective(resolved: Resolved) -> list[tuple[Setting, Any, str]]:
    assert resolved.config is not None
    return [(s, getattr(resolved.config, s.name), str(resolved.origin(s.name))) for s in SETTINGS]


def _print_settings(resolved: Resolved) -> None:
    rows = [
        (s.toml, "unset" if value is None else _literal(_plain(value)), source)
        for s, value, source in _effective(resolved)
    ]
    width_key = max(len(r[0]) for r in rows)
    width_value = max(len(r[1]) for r in rows)
    for key, value, source in rows:
        typer.echo(f"  {key:<{width_key}}  {value:<{width_value}}  {source}")


def _plain(value: Any) -> Any:
    """A value as JSON can hold it: tuples become lists, None stays None."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, BaseModel):  # a listener: what was set, as the file would say it
        return _plain(value.model_dump(exclude_defaults=True))
    return repr(value)


def _json_result(label: str, resolved: Resolved, warnings: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "file": label,
        "valid": not resolved.errors and resolved.config is not None,
        "errors": [str(e) for e in resolved.errors],
        "warnings": warnings,
    }
    if resolved.config is not None and not resolved.errors:
        result["settings"] = {
            s.toml: {"value": _plain(value), "source": source, "env": s.env}
            for s, value, source in _effective(resolved)
        }
    return result


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the TOML configuration file."""
    from appserver.config.schema import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


def main() -> None:
    """Console entry point (``appserver``, ``python -m appserver``)."""
    cli(prog_name="appserver")


if __name__ == "__main__":  # pragma: no cover
    main()
