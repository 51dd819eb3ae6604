"""The one path every front end (CLI, ``serve()``, Flask, Django) takes to a running master."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .appspec import DEFAULT_LOADER, AppSpec, check_importable
from .config import OPTIONS_BY_NAME, Config, build_config, env_values, unknown_env_warnings
from .configfile import find_config_file, read_config_file
from .errors import AppLoadError, ConfigError, SharedsockError
from .logs import check_access_log_format, setup_error_log
from .privileges import check_identity, give_files
from .tls import check_files as check_tls_files


def enter_directory(config: Config) -> None:
    """``--chdir``, before anything resolves a relative path or imports the app (as gunicorn
    does); the directory becomes importable, as the current directory is for ``sharedsock``."""
    if not config.chdir:
        return
    try:
        os.chdir(config.chdir)
    except OSError as exc:
        raise ConfigError(f"--chdir {config.chdir}: {exc.strerror or exc}") from None
    if config.chdir not in sys.path:
        sys.path.insert(0, config.chdir)


def prepare(config: Config, spec: AppSpec) -> None:
    """Checks that need the file system; raises ConfigError before anything starts."""
    enter_directory(config)
    identity = check_identity(config)
    if spec.app is not None and config.start_method == "spawn":
        raise ConfigError("--start-method spawn needs the app as an import string "
                          "(e.g. 'package.module:app'): a spawned worker cannot receive an object")
    try:
        check_access_log_format(config.access_log_format)
    except ValueError as exc:
        raise ConfigError(f"--access-log-format: {exc}") from None
    if config.access_log and config.access_log != "-":
        _check_writable(config.access_log, "--access-log")
    if config.error_log != "-":
        _check_writable(config.error_log, "--error-log")
    give_files([p for p in (config.access_log, config.error_log) if p and p != "-"], identity)
    for path in config.reload_extra_files:
        if not os.path.exists(path):
            raise ConfigError(f"--reload-extra-files: {path} does not exist")
    check_tls_files(config)
    if spec.loader == DEFAULT_LOADER:
        check_importable(spec.args["target"])
    try:
        setup_error_log(config.error_log, config.log_level)
    except OSError as exc:
        raise ConfigError(f"--error-log {config.error_log}: {exc.strerror or exc}") from None


def check(config: Config, spec: AppSpec) -> None:
    """``--check-config``: everything a start would check, and that the app loads, without
    binding (a running server may hold the addresses) or serving."""
    from .appcheck import check_app
    from .listeners import parse_bind

    for bind in config.bind:
        parse_bind(bind)
    prepare(config, spec)
    check_app(config, spec)


def _check_writable(path: str, flag: str) -> None:
    try:
        with open(path, "a"):
            pass
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: {exc.strerror or exc}") from None


def run(config: Config, spec: AppSpec,
        on_bound: Callable[[list[Listener]], None] | None = None) -> Master:
    """Start the master and block until it stops; returns it for its exit code and reason.

    ``on_bound(listeners)`` runs in the master right after every address is bound, before
    anything else is logged: a front end's banner ("Serving Flask app ...") belongs there,
    not before an "address already in use" that would make it untrue.
    """
    from .master import Master

    prepare(config, spec)
    master = Master(config, spec, on_bound=on_bound)
    master.run()
    return master


def resolve(options: Mapping[str, Any], source: str = "serve()",
            defaults: Mapping[str, Any] | None = None, defaults_source: str = "settings") -> Config:
    """Defaults from an integration, then the config file, then SHAREDSOCK_* variables, then
    explicit options. Every front end comes through here, so the order is the same in all.

    ``defaults_source`` names the defaults in error messages, e.g. "settings.SHAREDSOCK".
    The config file is the one ``config`` names (options, then environment, then defaults),
    else ``./sharedsock.conf.py`` when it exists; ``Config.config`` is its absolute path.
    """
    environment = env_values()
    warn_once(unknown_env_warnings())
    path = find_config_file(*_config_file_candidates(options, source, environment,
                                                     defaults or {}, defaults_source))
    layers = []
    if defaults:
        layers.append((defaults_source, defaults))
    if path is not None:
        found = read_config_file(path)
        layers.append((found.source, found.values))
    layers.append(("environment", environment))
    layers.append((source, options))
    return build_config(*layers).replace(config=path)


def _config_file_candidates(options: Mapping[str, Any], source: str, environment: Mapping[str, str],
                            defaults: Mapping[str, Any], defaults_source: str) -> list[tuple[str, Any]]:
    option = OPTIONS_BY_NAME["config"]
    candidates = []
    for layer, label in ((options, option.flag if source == "command line" else f"{source} option 'config'"),
                         (environment, option.env),
                         (defaults, f"{defaults_source} option 'config'")):
        raw = layer.get("config")
        if raw is not None:
            candidates.append((label, option.parse(raw, label)))
    return candidates


_warned: set[str] = set()


def warn_once(lines: list[str]) -> None:
    """Print each warning line to stderr once per process (front ends may resolve twice)."""
    for line in lines:
        if line not in _warned:
            _warned.add(line)
            print(f"sharedsock: warning: {line}", file=sys.stderr, flush=True)


def serve(app: Callable | str, **options: Any) -> None:
    if threading.current_thread() is not threading.main_thread():
        raise ConfigError("serve() must be called from the main thread: the master needs "
                          "Python's signal handlers, which only the main thread can install")
    config = resolve(options)
    spec = AppSpec.from_target(app) if isinstance(app, str) else AppSpec.from_callable(app)
    master = run(config, spec)
    if master.exit_code:
        reason = master.halt_reason or f"server stopped with exit code {master.exit_code}"
        raise (AppLoadError if master.exit_code == 2 else SharedsockError)(reason)


if TYPE_CHECKING:
    from .listeners import Listener
    from .master import Master
