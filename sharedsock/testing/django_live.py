"""A Django project served live, by real sharedsock workers, on the test database.

Workers are other processes, so they can share only a database that lives outside the test
process: a SQLite *file* (the default here: an in-memory test database, Django's default
for SQLite, is made a file) or a database server (PostgreSQL, MySQL), whose test database
Django creates as usual. The workers load the project's ``WSGI_APPLICATION`` through
``application()`` below, which points each database alias at the test database's name before
anything connects. What a test writes must be committed to be seen, so live tests run in
autocommit (``TransactionTestCase`` semantics), and the data is flushed after each test.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .live import LiveServer, start

LIVE_HOSTS = ["127.0.0.1", "localhost", "[::1]"]


def application(settings_module: str, databases: dict[str, str], hosts: list[str]) -> Callable:
    """The loader a live server's workers call: ``WSGI_APPLICATION`` on the test databases."""
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    import django
    from django.conf import settings

    for alias, name in databases.items():
        settings.DATABASES[alias]["NAME"] = name
    if "*" not in settings.ALLOWED_HOSTS:
        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, *hosts]
    django.setup()
    from django.core.servers.basehttp import get_internal_wsgi_application

    return get_internal_wsgi_application()


def target(databases: dict[str, str]) -> str:
    """The import string that makes workers (fork or spawn) call ``application()``."""
    from django.conf import settings

    # Under override_settings, settings.SETTINGS_MODULE is None: the environment names it.
    module = os.environ.get("DJANGO_SETTINGS_MODULE") or settings.SETTINGS_MODULE
    if not module:
        raise RuntimeError("a live server's workers load the project from its settings module: "
                           "set DJANGO_SETTINGS_MODULE (settings.configure() cannot reach them)")
    return f"sharedsock.testing.django_live:application({module!r}, {databases!r}, {LIVE_HOSTS!r})"


def start_project(databases: dict[str, str], **options: Any) -> LiveServer:
    return start(target(databases), **options)


def database_names(aliases: Any = None) -> dict[str, str]:
    """``{alias: NAME}`` of the (test) databases the connections use now."""
    from django.db import connections

    chosen = None if aliases is None or aliases == "__all__" else set(aliases)
    return {conn.alias: str(conn.settings_dict["NAME"]) for conn in connections.all()
            if chosen is None or conn.alias in chosen}


class TestDatabases:
    """Creates the test databases for a session (as ``manage.py test`` does), SQLite as files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._old: Any = None

    def setup(self) -> dict[str, str]:
        import django

        django.setup()
        from django.db import connections
        from django.test.utils import setup_databases, setup_test_environment

        for conn in connections.all():
            if conn.vendor == "sqlite":
                test = conn.settings_dict.setdefault("TEST", {})
                if not test.get("NAME") or conn.creation.is_in_memory_db(test["NAME"]):
                    test["NAME"] = str(self.directory / f"test_{conn.alias}.sqlite3")
        setup_test_environment()
        self._old = setup_databases(verbosity=0, interactive=False)
        return database_names()

    def flush(self) -> None:
        """What TransactionTestCase does after each test: empty every table."""
        from django.core.management import call_command

        for alias in database_names():
            call_command("flush", verbosity=0, interactive=False, database=alias)

    def teardown(self) -> None:
        from django.db import connections
        from django.test.utils import teardown_databases, teardown_test_environment

        if self._old is not None:
            connections.close_all()
            teardown_databases(self._old, verbosity=0)
            self._old = None
        teardown_test_environment()


class _FileSwap:
    """An in-memory SQLite test database copied to a file for the class's live tests, and back.

    The test process keeps its in-memory connection aside (closing it would destroy the
    database) and uses the file meanwhile; afterwards the file's content goes back into it."""

    def __init__(self, alias: str) -> None:
        from django.db import connections

        self.alias = alias
        self.conn = connections[alias]
        self.conn.ensure_connection()
        self.memory = self.conn.connection
        self.memory_name = self.conn.settings_dict["NAME"]
        handle, self.path = tempfile.mkstemp(prefix=f"sharedsock-{alias}-", suffix=".sqlite3")
        os.close(handle)
        with sqlite3.connect(self.path) as copy:
            self.memory.backup(copy)
        copy.close()
        self.conn.connection = None
        self.conn.settings_dict["NAME"] = self.path

    def restore(self) -> None:
        self.conn.close()
        with sqlite3.connect(self.path) as copy:
            copy.backup(self.memory)
        copy.close()
        self.conn.settings_dict["NAME"] = self.memory_name
        self.conn.connection = self.memory
        os.unlink(self.path)


def _served_databases(aliases: Any, swaps: list[_FileSwap]) -> dict[str, str]:
    from django.db import connections

    names = {}
    for alias, name in database_names(aliases).items():
        conn = connections[alias]
        if conn.vendor == "sqlite" and conn.is_in_memory_db():
            swap = _FileSwap(alias)
            swaps.append(swap)
            name = swap.path
        names[alias] = name
    return names


def _live_test_case() -> type:
    from django.test import LiveServerTestCase
    from django.utils.functional import classproperty

    class SharedsockLiveServerTestCase(LiveServerTestCase):
        """``LiveServerTestCase`` served by a sharedsock master and its workers, not a thread.

        ``workers`` (2) and ``server_options`` (any ``serve()`` option) set the server;
        ``cls.live_server`` is the LiveServer (``pids``, ``log``, ``reload()``,
        ``kill_worker()``). Works under ``manage.py test`` with the default in-memory SQLite
        test database (copied to a file for the class's duration) or a database server."""

        host = "127.0.0.1"
        workers = 2
        server_options: dict[str, Any] = {}
        live_server: LiveServer

        @classproperty
        def live_server_url(cls) -> str:
            return str(cls.live_server.url)

        @classmethod
        def _start_server_thread(cls) -> None:
            swaps: list[_FileSwap] = []
            try:
                databases = _served_databases(cls.databases, swaps)
                cls.live_server = start_project(databases, **{"workers": cls.workers,
                                                              **cls.server_options})
            except BaseException:
                for swap in swaps:
                    swap.restore()
                raise
            cls.addClassCleanup(cls._stop_live_server, swaps)

        @classmethod
        def _stop_live_server(cls, swaps: list[_FileSwap]) -> None:
            try:
                cls.live_server.stop()
            finally:
                for swap in swaps:
                    swap.restore()

    return SharedsockLiveServerTestCase


def __getattr__(name: str) -> Any:
    # Django is imported only by whoever asks for the test case (module import stays cheap).
    if name == "SharedsockLiveServerTestCase":
        cls = _live_test_case()
        globals()[name] = cls
        return cls
    raise AttributeError(name)
