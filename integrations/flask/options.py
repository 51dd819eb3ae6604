"""The click options of ``flask runshared``, generated from ``sharedsock.config.OPTIONS``.

Engine options are never listed here by hand: each ``Option`` becomes one
click option with the same flag, metavar and help, plus a Flask-style
``FLASK_RUNSHARED_<NAME>`` environment variable. Values stay raw strings
in click; the engine's own converter checks them later (``settings.py``), so a
bad value gets the same message as on the ``sharedsock`` command line.

The options ``flask run`` users expect (``--host``, ``--port``, ``--debug``,
``--debugger``, ``--extra-files``) are declared here too, under "Flask".
"""

from __future__ import annotations

import os
from typing import Any

import click
from flask.cli import SeparatedPathType

from sharedsock.config import OPTIONS, Option

FLASK_ENV_PREFIX = "FLASK_RUNSHARED_"
FLASK_SECTION = "Flask"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000

# Defaults that differ under `flask runshared`, shown in --help instead of the engine's.
_DEFAULT_TEXT = {
    "bind": f"--host:--port, i.e. {DEFAULT_HOST}:{DEFAULT_PORT}",
    "workers": "CPUs available to this process; 1 with --debug",
    "reload": "on with --debug, else off",
    "access_log": "- (stdout) with --debug, else off",
}


class SectionOption(click.Option):
    """A click option that remembers which help section it belongs to."""

    def __init__(self, *args: Any, section: str = FLASK_SECTION, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.section = section


def flask_env(option: Option) -> str:
    return FLASK_ENV_PREFIX + option.name.upper()


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool | None) -> bool | None:
    """Like ``flask run --debug``: set FLASK_DEBUG so the app factory already sees it."""
    if value is not None:
        os.environ["FLASK_DEBUG"] = "1" if value else "0"
    return value


def flask_params() -> list[click.Parameter]:
    return [
        SectionOption(["--debug/--no-debug"], default=None, expose_value=False, callback=_set_debug,
                      help="Set debug mode (as 'flask --debug' does): turns on --reload and the "
                           "Werkzeug debugger with one worker."),
        SectionOption(["--host", "-h"], default=None, envvar=FLASK_ENV_PREFIX + "HOST",
                      help="The interface to bind to (ignored when --bind is given). [default: "
                           f"FLASK_RUN_HOST, as for 'flask run', else {DEFAULT_HOST}; "
                           "env FLASK_RUNSHARED_HOST]"),
        SectionOption(["--port", "-p"], default=None, type=int, envvar=FLASK_ENV_PREFIX + "PORT",
                      help="The port to bind to (ignored when --bind is given); 0 picks a free one. "
                           f"[default: FLASK_RUN_PORT, as for 'flask run', else {DEFAULT_PORT}; "
                           "env FLASK_RUNSHARED_PORT]"),
        SectionOption(["--debugger/--no-debugger"], default=None, envvar=FLASK_ENV_PREFIX + "DEBUGGER",
                      help="Wrap the app in the Werkzeug debugger. By default it is on with --debug "
                           "unless a worker count is given (--workers, its environment variables "
                           "or app.config['SHAREDSOCK']): its state lives in one process."),
        SectionOption(["--extra-files"], default=None, type=SeparatedPathType(),
                      envvar=FLASK_ENV_PREFIX + "EXTRA_FILES",
                      help="As in 'flask run': more files that trigger a reload, separated by "
                           f"{os.path.pathsep!r}. Added to --reload-extra-files."),
        SectionOption(["--cert"], default=None, metavar="PATH", envvar=FLASK_ENV_PREFIX + "CERT",
                      help="As in 'flask run': serve TLS with this PEM certificate (the same as "
                           "--certfile; 'adhoc' is not supported). [env FLASK_RUNSHARED_CERT]"),
        SectionOption(["--key"], default=None, metavar="PATH", envvar=FLASK_ENV_PREFIX + "KEY",
                      help="As in 'flask run': the key of --cert (the same as --keyfile). "
                           "[env FLASK_RUNSHARED_KEY]"),
        SectionOption(["--print-config"], is_flag=True, default=False,
                      help="Find the app, print the resolved configuration and exit."),
    ]


def engine_param(option: Option) -> click.Option:
    """One engine option as a click option; raw values, checked later by the engine."""
    default = _DEFAULT_TEXT.get(option.name, option.describe_default())
    help_text = f"{option.help} [default: {default}; env {flask_env(option)} or {option.env}]"
    decls = [option.short, option.flag] if option.short else [option.flag]
    kwargs: dict[str, Any] = {"default": None, "envvar": flask_env(option), "help": help_text,
                              "section": option.section}
    if option.is_flag:
        decls = [f"{option.flag}/--no-{option.flag[2:]}"]
    else:
        kwargs["metavar"] = option.metavar
        kwargs["type"] = click.STRING
        if option.multiple:
            kwargs["multiple"] = True
            kwargs["default"] = ()
            kwargs["type"] = EngineListItem(option)
    return SectionOption([*decls, option.name], **kwargs)


class EngineListItem(click.types.StringParamType):
    """One item of a list option; its environment variable is split as the engine splits
    ``SHAREDSOCK_*`` (click would split at whitespace only, so ``a,b`` would stay one item)."""

    def __init__(self, option: Option) -> None:
        self.option = option

    def split_envvar_value(self, rv: str) -> tuple[str, ...]:
        return self.option.split_text(rv)


def build_params() -> list[click.Parameter]:
    return flask_params() + [engine_param(option) for option in OPTIONS]


def format_option_sections(params: list[click.Parameter], ctx: click.Context,
                           formatter: click.HelpFormatter) -> None:
    """``--help`` grouped like the engine's: Flask first, then Sockets, Workers, Timeouts..."""
    sections: dict[str, list[tuple[str, str]]] = {}
    for param in params:
        record = param.get_help_record(ctx)
        if record is None:
            continue
        sections.setdefault(getattr(param, "section", FLASK_SECTION), []).append(record)
    for name, records in sections.items():
        with formatter.section(name):
            formatter.write_dl(records)
