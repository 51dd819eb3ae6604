"""``sharedsock [options] MODULE:APP``: argparse generated from ``config.OPTIONS``.

``sharedsock status`` and ``sharedsock top`` read a running server's view instead (see
``statusview``)."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from . import __version__
from .appspec import AppSpec
from .config import OPTIONS, Option, format_config
from .errors import SharedsockError, exit_code_for


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints usage before its error; a user wants just the error line."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        return parse_suggesting(self, args, namespace)


def parse_suggesting(parser: argparse.ArgumentParser, args: Sequence[str] | None = None,
                     namespace: argparse.Namespace | None = None) -> argparse.Namespace:
    """``parse_args``, but a misspelt flag is named with the flag it was probably meant to be.

    argparse's own "unrecognized arguments: --wrokers good:app" neither says which word is
    wrong (a value after an unknown flag is taken for the app) nor what would be right.
    """
    parsed, extras = parser.parse_known_args(args, namespace)
    if extras:
        parser.error(unrecognized_message(parser, extras))
    return parsed


def unrecognized_message(parser: argparse.ArgumentParser, extras: Sequence[str]) -> str:
    flag = next((e.partition("=")[0] for e in extras if e.startswith("-") and e != "-"), None)
    if flag is None:
        return f"unrecognized arguments: {' '.join(extras)}"
    known = [s for action in parser._actions for s in action.option_strings if s.startswith("--")]
    guess = difflib.get_close_matches(flag, known, n=1, cutoff=0.6) if flag.startswith("--") else []
    hint = f" (did you mean {guess[0]}?)" if guess else f" (see {parser.prog} --help)"
    return f"unknown option {flag}{hint}"


def add_option_arguments(parser: argparse.ArgumentParser, skip: Iterable[str] = ()) -> None:
    """Add one argument per option, grouped by section; defaults stay None so we know what was given."""
    skipped = set(skip)
    groups: dict[str, Any] = {}
    for option in OPTIONS:
        if option.name in skipped:
            continue
        group = groups.get(option.section)
        if group is None:
            group = groups[option.section] = parser.add_argument_group(option.section)
        group.add_argument(*option_flags(option), **argparse_kwargs(option))


def option_flags(option: Option) -> list[str]:
    return [option.short, option.flag] if option.short else [option.flag]


def help_text(option: Option) -> str:
    return f"{option.help} [default: {option.describe_default()}; env {option.env}]"


def argparse_kwargs(option: Option) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dest": option.name, "default": None,
                              "help": help_text(option).replace("%", "%%")}
    if option.is_flag:
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        kwargs["metavar"] = option.metavar
        if option.multiple:
            kwargs["action"] = "append"
    return kwargs


def given_options(namespace: argparse.Namespace) -> dict[str, Any]:
    values = vars(namespace)
    return {o.name: values[o.name] for o in OPTIONS if values.get(o.name) is not None}


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="sharedsock",
        description="Serve a WSGI app: one master binds the sockets, N workers share them.",
        epilog="Every option can also be set with its SHAREDSOCK_* environment variable, or in "
               "a config file (--config, else ./sharedsock.conf.py): command-line flags win, then "
               "the environment, then the file. 'sharedsock status ADDRESS' and 'sharedsock top "
               "ADDRESS' show a running server's workers, read from its --metrics-bind address.",
    )
    parser.add_argument("app", nargs="?", metavar="MODULE:APP",
                        help="the WSGI app: package.module:app, package.module:create_app(), "
                             "or package.module (finds 'application' or 'app')")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved configuration and exit")
    parser.add_argument("--check-config", action="store_true",
                        help="check the configuration, the addresses' syntax and that the app loads "
                             "(as a worker would: same user, directory and loader), then exit 0, "
                             "or 2 with the problem; nothing is bound or served")
    parser.add_argument("--version", action="version", version=f"sharedsock {__version__}")
    add_option_arguments(parser)
    return parser


VIEW_COMMANDS = ("status", "top")  # `sharedsock status ADDRESS`: an app module of that name is status:app


def main(argv: Sequence[str] | None = None) -> int:
    args_given = list(sys.argv[1:] if argv is None else argv)
    if args_given and args_given[0] in VIEW_COMMANDS:
        from .statusview import main as view_main

        return view_main(args_given)
    parser = build_parser()
    args = parser.parse_args(args_given)
    from .runner import check, enter_directory, resolve, run

    try:
        config = resolve(given_options(args), source="command line")
        if args.print_config:
            print(format_config(config))
            return 0
        if not args.app:
            parser.error("no app given: expected MODULE:APP, e.g. myproject.wsgi:application")
        spec = AppSpec.from_target(args.app)
        enter_directory(config)
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # like python -m: the current directory is importable
        if args.check_config:
            check(config, spec)
            where = f", config file {config.config}" if config.config else ""
            print(f"sharedsock: configuration OK{where}; app {spec.name} loads")
            return 0
        master = run(config, spec)
    except SharedsockError as exc:
        print(f"sharedsock: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    return master.exit_code
