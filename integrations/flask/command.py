"""What ``flask runshared`` does once click has parsed its arguments.

Find the app (checked once, before binding, the way the workers will load
it), resolve the options, then hand an ``AppSpec`` to the engine. Errors a
user can fix are reported like Flask's own: one ``Error:`` line, exit 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click
from flask.cli import NoAppException, ScriptInfo
from flask.helpers import get_debug_flag

from sharedsock.appspec import AppSpec
from sharedsock.config import format_config, to_log_level, unknown_env_warnings
from sharedsock.errors import AppLoadError, ConfigError, SharedsockError, exit_code_for

from . import discovery
from .loader import announce_debugger, with_debugger
from .options import FLASK_ENV_PREFIX
from .settings import Plan, app_settings, command_line_options, make_plan

LOADER = "sharedsock.integrations.flask.loader:load"


class ServerError(click.ClickException):
    """An engine error (bind failed, unwritable log...): one line, the engine's exit code."""

    def __init__(self, exc: SharedsockError) -> None:
        super().__init__(str(exc))
        self.exit_code = exit_code_for(exc)  # type: ignore[misc]  # click reads it per instance


@dataclass(frozen=True)
class FoundApp:
    name: str
    settings: Any  # the raw app.config.get("SHAREDSOCK")
    app: Any = None  # set only for FlaskGroup(create_app=...): the app built in the master


def run_shared(ctx: click.Context, values: Mapping[str, Any]) -> None:
    """``values`` are click's, by parameter name; exits with the master's exit code."""
    info = ctx.ensure_object(ScriptInfo)
    debug = get_debug_flag()
    warn_unknown_variables(ctx)
    try:
        given = command_line_options(ctx, values)
        found = find_app(info, given, debug, values["debugger"])
        plan = make_plan(given, app_settings(found.settings), debug, values["debugger"])
        if found.app is not None:
            _refuse_spawn(plan.config.start_method)
    except ConfigError as exc:
        raise click.UsageError(str(exc), ctx) from None
    spec = app_spec(info, found, plan)
    if values["print_config"]:
        click.echo(print_config(spec, plan))
        return
    ctx.exit(serve(spec, plan, debug, built_in_master=found.app is not None))


def print_config(spec: AppSpec, plan: Plan) -> str:
    """The engine's ``--print-config`` dump, plus the app and the debugger decision."""
    text = format_config(plan.config)
    width = text.index("=") - 1
    lines = [text, f"{'flask_app'.ljust(width)} = {spec.name}",
             f"{'debugger'.ljust(width)} = {'on' if plan.debugger else 'off'}"]
    lines += [f"# {note}" for note in plan.notes + plan.warnings]
    return "\n".join(lines)


def warn_unknown_variables(ctx: click.Context) -> None:
    """``FLASK_RUNSHARED_WROKERS=4`` would be ignored without a word; name it, and the closest
    option. ``SHAREDSOCK_*`` variables are checked by the engine when it resolves them."""
    from sharedsock.runner import warn_once

    known = [param.name for param in ctx.command.params if param.name]
    warn_once(unknown_env_warnings(prefix=FLASK_ENV_PREFIX, known=known))


def find_app(info: ScriptInfo, given: Mapping[str, Any], debug: bool,
             debugger: bool | None) -> FoundApp:
    """Fail now, before binding, if the workers will not find the app."""
    if info.create_app is not None:
        # A custom FlaskGroup(create_app=...): there is no import string a worker could
        # use, so the app is built here and forked workers inherit it.
        _refuse_spawn(make_plan(given, {}, debug, debugger).config.start_method)
        app = info.load_app()
        return FoundApp(app.name, app.config.get("SHAREDSOCK"), app)
    try:
        found = discovery.probe(info.app_import_path, info.set_debug_flag,
                                show_traceback=_debug_log(given))
    except discovery.NotFound as exc:
        raise NoAppException(str(exc)) from None
    except discovery.LoadFailed as exc:
        raise ServerError(AppLoadError(f"the Flask app failed to load: {exc}")) from None
    return FoundApp(found.name, found.settings)


def _debug_log(given: Mapping[str, Any]) -> bool:
    """``--log-level debug`` (or its variables) asked for; known before the app's own settings."""
    from sharedsock.config import env_values

    level = given.get("log_level") or env_values().get("log_level") or "info"
    try:
        return to_log_level(level) == "debug"
    except ValueError:
        return False  # reported later, with its source


def _refuse_spawn(start_method: str) -> None:
    if start_method == "spawn":
        raise ConfigError("--start-method spawn: this command builds the app with "
                          "FlaskGroup(create_app=...), and a spawned worker cannot receive an "
                          "object; use --start-method fork, or 'flask --app MODULE:create_app() "
                          "runshared' so each worker imports the app itself")


def app_spec(info: ScriptInfo, found: FoundApp, plan: Plan) -> AppSpec:
    if found.app is not None:
        app = with_debugger(found.app) if plan.debugger else found.app
        return AppSpec(app=app, name=found.name)
    return AppSpec(loader=LOADER, name=info.app_import_path or found.name,
                   args={"app_import_path": info.app_import_path,
                         "set_debug_flag": info.set_debug_flag,
                         "debugger": plan.debugger})


def serve(spec: AppSpec, plan: Plan, debug: bool, built_in_master: bool) -> int:
    """Run the master on this (the main) thread until it stops; returns its exit code."""
    from sharedsock.logs import log
    from sharedsock.runner import run

    config = plan.config

    def announce(listeners: list) -> None:
        """Run by the master once it holds every address: a taken port shows no banner."""
        log.info("Serving Flask app '%s'", spec.name)
        log.info("Debug mode: %s", "on" if debug else "off")
        for note in plan.notes:
            log.info("%s", note)
        for warning in plan.warnings:
            log.warning("%s", warning)
        if built_in_master and plan.debugger:
            announce_debugger(spec.app)
        if built_in_master and config.reload:
            log.warning("the app was built in the master by FlaskGroup(create_app=...): reloads "
                        "restart the workers but cannot pick up code changes")

    try:
        master = run(config, spec, on_bound=announce)
    except SharedsockError as exc:
        raise ServerError(exc) from None
    return master.exit_code
