"""From click values, environment and ``app.config["SHAREDSOCK"]`` to one sharedsock ``Config``.

Precedence, highest first:

1. the command line (``--workers 4``),
2. ``FLASK_RUNSHARED_WORKERS`` (specific to this command, so it beats...),
3. ``SHAREDSOCK_WORKERS`` (read by every sharedsock front end),
4. the config file (``--config``, else ``./sharedsock.conf.py``; added by ``runner.resolve``),
5. ``app.config["SHAREDSOCK"] = {"workers": 4}`` (the app's own defaults),
6. the defaults of ``flask runshared``: the address from ``FLASK_RUN_HOST``/``FLASK_RUN_PORT``
   (what ``flask run`` reads; 127.0.0.1:5000 without them), with ``--debug`` reload on, one
   worker and the access log on stdout, then the engine's defaults.

``--host``/``--port`` form a bind at the level they were given at (the one not given comes
from level 6), and ``--bind`` given at the same level replaces them. Every value is parsed
with the engine's own converter and labelled with where it came from, so an error says
``FLASK_RUNSHARED_WORKERS: expected an integer, got 'x'``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click
from click.core import ParameterSource

from sharedsock.config import OPTIONS, OPTIONS_BY_NAME, Config, env_values, to_int
from sharedsock.errors import ConfigError
from sharedsock.runner import resolve
from sharedsock.tls import cert_key_options

from .options import DEFAULT_HOST, DEFAULT_PORT, flask_env

APP_SETTINGS = "app.config['SHAREDSOCK']"
_GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.DEFAULT_MAP)


def _given(ctx: click.Context, name: str) -> ParameterSource | None:
    source = ctx.get_parameter_source(name)
    return source if source in _GIVEN else None


def command_line_options(ctx: click.Context, values: Mapping[str, Any]) -> dict[str, Any]:
    """Engine options given on the command line or as ``FLASK_RUNSHARED_*``, parsed and checked."""
    given: dict[str, Any] = {}
    for option in OPTIONS:
        source = _given(ctx, option.name)
        raw = values.get(option.name)
        if source is None or raw is None or raw == ():
            continue
        label = flask_env(option) if source is ParameterSource.ENVIRONMENT else option.flag
        given[option.name] = option.parse(raw, label)
    if "bind" not in given and (_given(ctx, "host") or _given(ctx, "port")):
        host = values["host"] if _given(ctx, "host") else default_host()
        port = values["port"] if _given(ctx, "port") else default_port()
        given["bind"] = (host_port(host, port),)
    if _given(ctx, "cert") or _given(ctx, "key"):
        given.update(cert_key_options(values.get("cert") if _given(ctx, "cert") else None,
                                      values.get("key") if _given(ctx, "key") else None, given))
    extra = values.get("extra_files")
    if extra:
        files = tuple(given.get("reload_extra_files", ())) + tuple(extra)
        given["reload_extra_files"] = OPTIONS_BY_NAME["reload_extra_files"].parse(files, "--extra-files")
    return given


def default_host() -> str:
    """``flask run`` users set FLASK_RUN_HOST (often in .flaskenv); it means the same here."""
    return os.environ.get("FLASK_RUN_HOST", "").strip() or DEFAULT_HOST


def default_port() -> int:
    raw = os.environ.get("FLASK_RUN_PORT", "").strip()
    if not raw:
        return DEFAULT_PORT
    try:
        port = to_int(raw)
    except ValueError as exc:
        raise ConfigError(f"FLASK_RUN_PORT: {exc}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"FLASK_RUN_PORT: expected a port number (0-65535), got {raw!r}")
    return port


def host_port(host: str, port: int) -> str:
    """``--host ::1 --port 80`` -> ``[::1]:80``, the engine's bind syntax."""
    host = host.strip()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def app_settings(raw: Any) -> dict[str, Any]:
    """Check ``app.config["SHAREDSOCK"]``: a dict of option names (as in ``serve()``) to values."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{APP_SETTINGS} must be a dict of sharedsock options such as "
                          f"{{'workers': 4}}, got {type(raw).__name__}")
    settings = {}
    for name, value in raw.items():
        option = OPTIONS_BY_NAME.get(name) if isinstance(name, str) else None
        if option is None:
            raise ConfigError(f"{APP_SETTINGS}: unknown option {name!r} (use the names of the "
                              f"command-line flags with underscores, e.g. 'max_requests')")
        if value is not None:
            settings[name] = option.parse(value, f"{APP_SETTINGS}[{name!r}]")
    return settings


@dataclass(frozen=True)
class Plan:
    """The resolved server configuration and what the debugger decision was, and why."""

    config: Config
    debugger: bool
    notes: tuple[str, ...]  # startup log lines (info)
    warnings: tuple[str, ...]


def make_plan(given: Mapping[str, Any], settings: Mapping[str, Any], debug: bool,
         debugger: bool | None) -> Plan:
    """Layer the options, then decide about the debugger, which only works in one process."""
    workers_given = "workers" in given or "workers" in settings or "workers" in env_values()
    wants_debugger = debug if debugger is None else debugger
    defaults: dict[str, Any] = {"bind": (host_port(default_host(), default_port()),)}
    if debug:
        defaults["reload"] = True
        defaults["access_log"] = "-"  # requests on the console, as `flask run` shows them
    if wants_debugger and not workers_given:
        defaults["workers"] = 1
    config = resolve(dict(given), source="command line", defaults={**defaults, **settings})

    notes: list[str] = []
    warnings: list[str] = []
    if wants_debugger and config.workers > 1:
        if debugger is None:
            wants_debugger = False
            notes.append(f"Debugger: off, because {config.workers} workers were asked for and the "
                         "Werkzeug debugger keeps its state in one process (give --workers 1 "
                         "or leave --workers out to use it)")
        else:
            warnings.append(f"Debugger: on in each of {config.workers} workers; it keeps its state "
                            "in one process, so its console may reach a worker that does not "
                            "know the traceback")
    elif wants_debugger:
        notes.append("Debugger: on, in a single worker (the Werkzeug debugger keeps its state "
                     "in one process; give --workers N to run more without it)")
    return Plan(config, wants_debugger, tuple(notes), tuple(warnings))
