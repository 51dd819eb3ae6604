"""pytest plugin: tests against a real sharedsock server (a master and N workers), the way
production serves the app, instead of a single-process development server.

Registered through the ``pytest11`` entry point. Importing it imports only pytest: the
server code loads when a fixture first starts a server.

Fixtures: ``sharedsock_server`` (a factory; ``sharedsock_server_module`` and
``sharedsock_server_session`` are the same for broader scopes), ``sharedsock_live_server``
(the ``app`` fixture, Flask's convention, else the Django project), ``live_server`` (the
same, unless pytest-flask or pytest-django provide theirs), ``sharedsock_webtest`` (a
``webtest.TestApp`` driving the live server over HTTP) and ``sharedsock_django_db``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .testing.live import LiveServer

Factory = Callable[..., "LiveServer"]

_SECTION = "sharedsock server log"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sharedsock", "sharedsock live servers")
    group.addoption("--sharedsock-start-method", choices=("fork", "spawn"), default=None,
                    help="start method of every live server whose test does not choose one")
    group.addoption("--sharedsock-workers", type=int, default=None, metavar="N",
                    help="workers of every live server whose test does not choose (default 2)")
    parser.addini("sharedsock_start_method", "default start method of live servers (fork, spawn)")
    parser.addini("sharedsock_workers", "default number of workers of live servers (2)")


def pytest_configure(config: pytest.Config) -> None:
    start_method = config.getoption("sharedsock_start_method") or config.getini("sharedsock_start_method")
    workers = config.getoption("sharedsock_workers") or config.getini("sharedsock_workers")
    if start_method or workers:
        from .testing import live

        config.stash[_saved_defaults] = dict(live._DEFAULTS)
        live.set_defaults(start_method=start_method or None, workers=int(workers) if workers else None)
    pm = config.pluginmanager
    # pytest-flask and pytest-django register a live_server of their own: theirs stays, and
    # ours is sharedsock_live_server (alias it in a conftest.py to switch).
    if not (pm.hasplugin("flask") or pm.hasplugin("django")):
        pm.register(_LiveServerAlias(), "sharedsock-live-server")


def pytest_unconfigure(config: pytest.Config) -> None:
    """An in-process session (pytester.runpytest) must not leave its defaults to the next one."""
    saved = config.stash.get(_saved_defaults, None)
    if saved is not None:
        from .testing import live

        live._DEFAULTS.clear()
        live._DEFAULTS.update(saved)


_saved_defaults = pytest.StashKey[dict]()


# -- attaching the server log to a failing test's report --------------------------------------

_begun = pytest.StashKey[tuple]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """Notes where each running server's log stands, so a report shows only this test's part."""
    import time

    module = sys.modules.get("sharedsock.testing.live")
    servers = module.started_servers() if module is not None else []
    item.stash[_begun] = (time.monotonic(), {id(s): len(s.log) for s in servers if not s.stopped})
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    module = sys.modules.get("sharedsock.testing.live")
    if not report.failed or module is None:
        return
    begun, marks = item.stash.get(_begun, (0.0, {}))
    for server in module.started_servers():
        if server.stopped_at is not None and server.stopped_at < begun:
            continue  # a server of an earlier test
        text = server.log[marks.get(id(server), 0):]
        if text:
            since = ", since this test began" if id(server) in marks else ""
            report.sections.append((f"{_SECTION} ({server.url or 'not ready'}{since})", text))


# -- the factory --------------------------------------------------------------------------------


def _factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Factory]:
    servers: list[LiveServer] = []

    def start(app_or_target: Any, **options: Any) -> LiveServer:
        from .testing.live import start as start_server

        options.setdefault("log_dir", tmp_path_factory.mktemp("sharedsock"))
        server = start_server(app_or_target, **options)
        servers.append(server)
        return server

    yield start
    problems = []
    for server in servers:
        try:
            server.stop()
        except AssertionError as exc:
            problems.append(str(exc))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def sharedsock_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Factory]:
    """``sharedsock_server(app_or_target, **serve_options) -> LiveServer``, ready; every server
    is stopped gracefully at teardown, which fails if the server logged an error or a
    worker crashed (pass ``allow_errors=True`` to allow it)."""
    yield from _factory(tmp_path_factory)


@pytest.fixture(scope="module")
def sharedsock_server_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Factory]:
    """``sharedsock_server`` for module-scoped fixtures: servers stop after the module."""
    yield from _factory(tmp_path_factory)


@pytest.fixture(scope="session")
def sharedsock_server_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Factory]:
    """``sharedsock_server`` for session-scoped fixtures: servers stop at the end of the run."""
    yield from _factory(tmp_path_factory)


# -- live_server: the project's app -------------------------------------------------------------


def _django_wanted() -> bool:
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        return True
    conf = sys.modules.get("django.conf")
    return bool(conf is not None and conf.settings.configured)


@pytest.fixture(scope="session")
def sharedsock_django_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The Django test databases for the session (SQLite as files, which every worker can
    open), created as ``manage.py test`` creates them; yields their TestDatabases."""
    from .testing.django_live import TestDatabases

    databases = TestDatabases(tmp_path_factory.mktemp("sharedsock-django-db"))
    databases.setup()
    yield databases
    databases.teardown()


@pytest.fixture(scope="session")
def _sharedsock_django_server(sharedsock_django_db: Any,
                              sharedsock_server_session: Factory) -> LiveServer:
    from .testing.django_live import database_names, target

    return sharedsock_server_session(target(database_names()))


@pytest.fixture
def sharedsock_live_server(request: pytest.FixtureRequest,
                           sharedsock_server: Factory) -> Iterator[LiveServer]:
    """The project served live: the ``app`` fixture (a Flask app, any WSGI callable, or an
    import string) if there is one, else the Django project (``DJANGO_SETTINGS_MODULE``) on
    its test database, which is flushed after each test."""
    try:
        app = request.getfixturevalue("app")
    except pytest.FixtureLookupError:
        app = None
    if app is not None:
        yield sharedsock_server(app)
        return
    if not _django_wanted():
        pytest.fail("live_server: define an `app` fixture (a Flask app, a WSGI callable or an import "
                    "string), or set DJANGO_SETTINGS_MODULE for a Django project", pytrace=False)
    server = request.getfixturevalue("_sharedsock_django_server")
    yield server
    request.getfixturevalue("sharedsock_django_db").flush()


class _LiveServerAlias:
    @pytest.fixture
    def live_server(self, sharedsock_live_server: LiveServer) -> LiveServer:
        """sharedsock's live server (see ``sharedsock_live_server``)."""
        return sharedsock_live_server


@pytest.fixture
def sharedsock_webtest(sharedsock_live_server: LiveServer) -> Any:
    """A ``webtest.TestApp`` whose requests go over HTTP to the live server (WSGIProxy2), so a
    WebTest suite runs unchanged against the production server."""
    import webtest

    return webtest.TestApp(str(sharedsock_live_server.url))
