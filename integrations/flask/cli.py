"""The ``flask runshared`` entry point, registered under ``flask.commands``.

Flask imports every ``flask.commands`` entry point for *every* ``flask``
command a user runs (``flask run``, ``flask shell``, ``flask --help``), and an
exception raised here would break them all. So this module imports nothing
but click, which Flask has already loaded. The options, generated from the
engine's ``OPTIONS``, are built the first time click asks for them, and the
implementation is imported only when ``runshared`` actually runs; a broken
engine then fails ``flask runshared`` with a clear error and nothing else.
"""

from __future__ import annotations

import typing as t

import click

SHORT_HELP = "Serve the app with sharedsock (multi-process, production)."

HELP = """Serve the app with sharedsock: one master binds the socket, N worker
processes share it and serve requests.

The app is found exactly as 'flask run' finds it: the '--app' option, the
FLASK_APP variable (also from .flaskenv or .env), or a wsgi.py or app.py file
in the current directory. Each worker imports the app itself, so a reload
(SIGHUP, or --reload, on by default with --debug) serves new code while the
socket stays open.

Every option can also be set with FLASK_RUNSHARED_<OPTION> or
SHAREDSOCK_<OPTION>, or in a Python config file (--config FILE, else
./sharedsock.conf.py); the command line wins, then FLASK_RUNSHARED_*, then
SHAREDSOCK_*, then the config file, then app.config["SHAREDSOCK"] (a dict of
option names), then the defaults.

With --debug, one worker runs with the Werkzeug debugger (it keeps its state
in one process); give --workers to run more, which turns the debugger off.
"""


class LazyOptionsCommand(click.Command):
    """A click command whose parameters are built on first use.

    click reads ``self.params`` only to parse arguments, show help or
    complete, so listing the command in ``flask --help`` never builds them.
    """

    def __init__(self, name: str, build_params: t.Callable[[], list[click.Parameter]],
                 **kwargs: t.Any) -> None:
        self._build_params = build_params
        self._params: list[click.Parameter] | None = None
        super().__init__(name, **kwargs)

    @property
    def params(self) -> list[click.Parameter]:
        if self._params is None:
            try:
                self._params = self._build_params()
            except Exception as exc:
                raise click.ClickException(_broken(exc)) from exc
        return self._params

    @params.setter
    def params(self, value: list[click.Parameter]) -> None:
        if value:  # click.Command.__init__ assigns [] first; stay lazy until asked
            self._params = list(value)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from .options import format_option_sections

        format_option_sections(self.get_params(ctx), ctx, formatter)


def _broken(exc: BaseException) -> str:
    return (f"sharedsock could not be loaded ({type(exc).__name__}: {exc}); "
            "reinstall it with: pip install 'sharedsock[flask]'")


def _build_params() -> list[click.Parameter]:
    from .options import build_params

    return build_params()


@click.pass_context
def _runshared(ctx: click.Context, /, **values: t.Any) -> None:
    try:
        from .command import run_shared
    except Exception as exc:
        raise click.ClickException(_broken(exc)) from exc
    run_shared(ctx, values)


runshared_command = LazyOptionsCommand(
    "runshared",
    _build_params,
    callback=_runshared,
    help=HELP,
    short_help=SHORT_HELP,
)
