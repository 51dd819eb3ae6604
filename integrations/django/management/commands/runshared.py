"""``manage.py runshared [addrport]``: runserver's interface on sharedsock's engine.

Django's start-up duties run here, in order and before anything binds: option
checks, system checks, the unapplied-migrations notice, closing the database
connections they opened. Then this process becomes the sharedsock master
(``handover.exec_master``: same PID, fresh interpreter) and every worker loads
``settings.WSGI_APPLICATION`` itself through ``loader.load``. Because of that
exec, ``call_command("runshared")`` never returns to its caller: it is meant
to be the whole process, as a server is.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser, SystemCheckError
from django.db import connections

import sharedsock
from sharedsock.appspec import AppSpec
from sharedsock.cli import add_option_arguments, given_options, parse_suggesting
from sharedsock.config import Config, format_config
from sharedsock.errors import ConfigError
from sharedsock.frames import library_prefixes
from sharedsock.listeners import parse_bind
from sharedsock.logs import format_exception_line
from sharedsock.runner import prepare, resolve
from sharedsock.tls import cert_key_options

from ...binds import addrport_to_bind
from ...handover import ADDRESSES, exec_master
from ...loader import LOADER

CONFIG_ERROR = ConfigError.exit_code  # for every refusal here, as the other front ends do


class Command(BaseCommand):
    help = ("Serves the project with sharedsock: one master binds the address, worker processes "
            "share it. Flags win over SHAREDSOCK_* environment variables, which win over the "
            "config file (--config, else ./sharedsock.conf.py), which wins over settings.SHAREDSOCK.")
    requires_system_checks: list[str] = []  # run explicitly in handle(), before binding, like runserver

    def get_version(self) -> str:
        import django

        return f"sharedsock {sharedsock.__version__} (Django {django.get_version()})"

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.error = _one_line_error(parser)
        parser.parse_args = _suggesting(parser)
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addrport", nargs="?",
                            help="Optional port number, or ipaddr:port, as for runserver "
                                 "(default 127.0.0.1:8000). Combined with any --bind.")
        parser.add_argument("--ipv6", "-6", action="store_true", dest="use_ipv6",
                            help="Use the IPv6 loopback [::1] when addrport has no address.")
        parser.add_argument("--noreload", action="store_const", const=False, dest="reload",
                            help="Same as --no-reload. Reloading is on by default when DEBUG is on.")
        parser.add_argument("--nostatic", action="store_false", dest="use_static_handler",
                            help="Do not serve static files, even with DEBUG on.")
        parser.add_argument("--insecure", action="store_true", dest="insecure_serving",
                            help="Serve static files even with DEBUG off (needs django.contrib.staticfiles).")
        parser.add_argument("--skip-checks", action="store_true", help="Skip system checks.")
        parser.add_argument("--cert", metavar="PATH",
                            help="Serve TLS with this PEM certificate, as 'flask run --cert' (the same "
                                 "as --certfile; 'adhoc' is not supported).")
        parser.add_argument("--key", metavar="PATH", help="The key of --cert (the same as --keyfile).")
        parser.add_argument("--print-config", action="store_true",
                            help="Print the resolved sharedsock configuration and exit.")
        add_option_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not settings.ALLOWED_HOSTS:
            raise CommandError("You must set settings.ALLOWED_HOSTS if DEBUG is False.",
                               returncode=CONFIG_ERROR)
        if not settings.SETTINGS_MODULE:
            raise CommandError("runshared needs a settings module (DJANGO_SETTINGS_MODULE or "
                               "--settings): workers import it, settings.configure() cannot reach them",
                               returncode=CONFIG_ERROR)
        try:
            config = self.build_config(options)
            spec = self.app_spec(options)
            if options["print_config"]:
                self.stdout.write(format_config(config))
                return
            for bind in config.bind:
                parse_bind(bind)
            prepare(config, spec)
        except ConfigError as exc:
            raise CommandError(str(exc), returncode=CONFIG_ERROR) from None

        if not options["skip_checks"]:
            self.run_checks(config)
        self.check_migrations()
        connections.close_all()  # what the checks opened, as runserver does; exec must not inherit them
        exec_master(config, spec, banner=self.banner(config))  # shown once the master has bound

    def run_checks(self, config: Config) -> None:
        """System checks; code that does not even import is fatal only without --reload.

        With --reload, a project broken at start behaves as one broken later:
        the workers report the error, the server waits for the fix.
        """
        self.stdout.write("Performing system checks...\n\n")
        try:
            self.check(display_num_errors=True)
        except SystemCheckError as exc:
            exc.returncode = CONFIG_ERROR
            raise
        except Exception as exc:
            line = format_exception_line(exc)
            if not config.reload:
                raise CommandError(f"system checks failed: {line}", returncode=CONFIG_ERROR) from exc
            self.stderr.write(f"System checks failed: {line}\n"
                              "Starting anyway (--reload): the server waits for a fix.")

    # -- building the configuration ------------------------------------------------

    def build_config(self, options: Mapping[str, Any]) -> Config:
        """settings.SHAREDSOCK < config file < SHAREDSOCK_* environment < flags (layered by
        ``resolve``); reload defaults to DEBUG."""
        user = getattr(settings, "SHAREDSOCK", {})
        if not isinstance(user, Mapping):
            raise ConfigError("settings.SHAREDSOCK must be a dict of sharedsock options, "
                              "e.g. {'workers': 4}")
        defaults = {"reload": bool(settings.DEBUG), **user}
        if settings.DEBUG:
            defaults = {"access_log": "-", **defaults}  # requests on the console, as runserver shows
        given = given_options(argparse.Namespace(**options))
        given.update(cert_key_options(options.get("cert"), options.get("key"), given))
        binds = self.binds(options)
        if binds:
            given["bind"] = binds
        config = resolve(given, source="command line", defaults=defaults,
                         defaults_source="settings.SHAREDSOCK")
        if config.reload:
            config = config.replace(
                reload_extra_files=config.reload_extra_files + tuple(_template_files()))
        return config

    def binds(self, options: Mapping[str, Any]) -> list[str]:
        """addrport (or --ipv6 alone) first, then every --bind; empty means "not given here"."""
        binds: list[str] = []
        extra = list(options.get("bind") or [])
        if options.get("addrport") or (options.get("use_ipv6") and not extra):
            try:
                binds.append(addrport_to_bind(options.get("addrport"), options.get("use_ipv6", False)))
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        elif options.get("use_ipv6"):
            raise ConfigError("--ipv6 applies to addrport; with --bind write the address itself, "
                              "e.g. --bind [::1]:8000")
        return binds + extra

    def app_spec(self, options: Mapping[str, Any]) -> AppSpec:
        if options.get("insecure_serving") and not apps.is_installed("django.contrib.staticfiles"):
            raise ConfigError("--insecure serves static files through django.contrib.staticfiles, "
                              "which is not in INSTALLED_APPS")
        if not options.get("use_static_handler", True):
            static = "off"
        elif options.get("insecure_serving"):
            static = "force"
        else:
            static = "auto"
        pythonpath = [options["pythonpath"]] if options.get("pythonpath") else []
        return AppSpec(loader=LOADER,
                       args={"settings": settings.SETTINGS_MODULE, "pythonpath": pythonpath,
                             "static": static},
                       name=settings.WSGI_APPLICATION or "django")

    def banner(self, config: Config) -> str:
        """runserver's start-up lines; ``{addresses}`` becomes the bound addresses."""
        import django

        return (
            f"Django version {django.get_version()}, using settings {settings.SETTINGS_MODULE!r}\n"
            f"Starting sharedsock {sharedsock.__version__} at {ADDRESSES}: {config.workers} worker(s), "
            f"start method {config.start_method}, reload {'on' if config.reload else 'off'}\n"
            "Quit the server with CONTROL-C.")


def _suggesting(parser: CommandParser) -> Callable[..., argparse.Namespace]:
    """A misspelt flag is named with the flag it was probably meant to be, as by ``sharedsock``."""

    def parse_args(args: Any = None, namespace: Any = None) -> argparse.Namespace:
        return parse_suggesting(parser, args, namespace)

    return parse_args


def _one_line_error(parser: CommandParser) -> Callable[[str], None]:
    """argparse prints the whole usage before a mistake; one line naming the mistake is kinder."""

    def error(message: str) -> None:
        if parser.called_from_command_line:
            parser.exit(CONFIG_ERROR, f"{parser.prog}: error: {message}\n")
        raise CommandError(f"Error: {message}", returncode=CONFIG_ERROR)

    return error


def _template_files() -> list[str]:
    """The project's template files, for --reload to watch.

    Django's cached template loader (on even with DEBUG since Django 4.1)
    keeps a template for the life of the process; runserver's reloader resets
    it on edits. Here an edited template gets a fresh worker generation.
    Templates in the standard library or site-packages (third-party apps) are
    left out, as the engine does for modules.
    """
    from django.template.autoreload import get_template_directories

    libraries = library_prefixes()
    files = []
    for directory in sorted(get_template_directories()):
        if str(directory).startswith(libraries) or not directory.is_dir():
            continue
        for path in sorted(directory.rglob("*")):
            text = str(path)
            if path.is_file():
                files.append(text)
    return files
