"""The pytest plugin's server factory, used directly (the plugin is active in this suite through
its entry point): real masters and workers, real HTTP, fork and spawn."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import wait_for
from sharedsock.testing import ServerError, start

APP = """
    import os
    import sqlite3

    {extra}

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/error":
            raise RuntimeError("boom from the plugin's test app")
        if path == "/crash":
            os._exit(3)
        body = f"pid={{os.getpid()}} ppid={{os.getppid()}}".encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
"""


def write_app(directory: Path, name: str = "plugin_app", extra: str = "") -> str:
    (directory / f"{name}.py").write_text(textwrap.dedent(APP.format(extra=extra)))
    return f"{name}:app"


@pytest.fixture
def app_target(tmp_path, monkeypatch):
    """An app module on sys.path, which the server's processes inherit."""
    monkeypatch.syspath_prepend(str(tmp_path))
    return write_app(tmp_path)


def answers_from_every_worker(server) -> dict[int, str]:
    seen: dict[int, str] = {}
    # Two requests at a time: a worker that just answered one client can take the next
    # itself before its sibling wakes, but not while it is busy with another.
    with ThreadPoolExecutor(2) as pool:
        for _ in range(200):
            for page in pool.map(server.get, ["/", "/"]):
                seen[int(page.text.split()[0].split("=")[1])] = page.text
            if set(seen) >= set(server.pids):
                return seen
    raise AssertionError(f"only {sorted(seen)} of {server.pids} answered")


def test_factory_serves_on_the_port_the_master_bound_once_every_worker_is_ready(
        sharedsock_server, app_target, start_method):
    server = sharedsock_server(app_target, start_method=start_method)
    assert server.host == "127.0.0.1" and server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}" and server.url("/x") == server.url + "/x"
    assert len(set(server.pids)) == 2
    for pid in server.pids:  # READY=1 came after each worker's boot, not at the first one
        assert f"Booted worker {pid} (generation 1)" in server.log
    assert f"Listening at: {server.url}" in server.log
    answers = answers_from_every_worker(server)
    assert all(f"ppid={server.master_pid}" in text for text in answers.values())
    assert f"Start method: {start_method}, 2 worker(s)" in server.log


def test_reload_and_kill_worker_report_the_new_workers(sharedsock_server, app_target, start_method):
    server = sharedsock_server(app_target, start_method=start_method)
    first = list(server.pids)
    second = server.reload()
    assert set(second).isdisjoint(first) and len(second) == 2 and server.generation == 2
    killed = server.kill_worker()
    assert killed == second[0] and killed not in server.pids and len(server.pids) == 2
    assert set(answers_from_every_worker(server)) == set(server.pids)
    # the kill is logged as an error, but it was the test's doing: teardown stays green


def test_an_app_object_is_served_by_a_fork_of_the_test_process(sharedsock_server):
    greeting = f"built by the test process {os.getpid()}"

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [greeting.encode()]

    server = sharedsock_server(app, start_method="fork", workers=1)
    assert server.get("/").text == greeting
    with pytest.raises(ServerError, match="no module-level name"):
        sharedsock_server(app, start_method="spawn")


def test_a_module_level_app_object_is_served_by_name_under_spawn(sharedsock_server, app_target):
    import importlib

    module = importlib.import_module(app_target.split(":")[0])
    server = sharedsock_server(module.app, start_method="spawn")
    assert "Start method: spawn" in server.log and server.get("/").status == 200


def test_any_serve_option_is_taken_and_a_wrong_name_is_refused(sharedsock_server, app_target):
    server = sharedsock_server(app_target, server_header="plugin-test", threads=2, max_requests=1000,
                               access_log="-", workers=1)
    reply = server.get("/hello")
    assert reply.headers["Server"] == "plugin-test"
    wait_for(lambda: "GET /hello HTTP/1.1" in server.log, message="the access log line")
    with pytest.raises(TypeError, match="not sharedsock options: wrokers"):
        sharedsock_server(app_target, wrokers=2)


def test_stop_fails_when_the_app_raised_or_a_worker_crashed(app_target, tmp_path, start_method):
    server = start(app_target, start_method=start_method, log_dir=tmp_path)
    assert server.get("/error").status == 500
    with pytest.raises(ServerError, match=r"the server logged: .*error handling GET /error"):
        server.stop()
    server = start(app_target, start_method=start_method, log_dir=tmp_path)
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url("/crash"), timeout=30)
    with pytest.raises(ServerError, match=r"the server logged: .*worker \d+ \(generation 1\) died: exit code 3"):
        server.stop()
    server = start(app_target, start_method=start_method, log_dir=tmp_path, allow_errors=True)
    assert server.get("/error").status == 500
    server.stop()


def test_an_app_that_does_not_load_fails_the_start_with_the_log(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "broken_plugin_app.py").write_text("raise ImportError('no such thing')\n")
    with pytest.raises(ServerError, match=r"(?s)exited .code 2.*app failed to load: ImportError: no such thing"):
        start("broken_plugin_app:app", log_dir=tmp_path)


def test_a_connection_opened_at_import_under_preload_is_warned_about(sharedsock_server, tmp_path,
                                                                      monkeypatch):
    """What the dev server cannot show: under --preload the master's SQLite connection would
    be shared by every forked worker; the live server's log says so, and strict refuses."""
    monkeypatch.syspath_prepend(str(tmp_path))
    database = tmp_path / "shared.sqlite3"
    target = write_app(tmp_path, "preloaded_db_app", extra=f"DB = sqlite3.connect({str(database)!r})")
    server = sharedsock_server(target, preload=True)
    assert ("fork safety: the app built in the master opened SQLite connections, which every forked "
            f"worker would share (the SQLite database {database})") in server.log
    assert server.get("/").status == 200
    with pytest.raises(ServerError, match="--strict-fork-safety: fork safety"):
        sharedsock_server(target, preload=True, strict_fork_safety=True)


def test_the_plugin_module_imports_nothing_of_the_server():
    code = ("import sys, sharedsock.pytest_plugin; "
            "print(sorted(m for m in sys.modules if m.startswith('sharedsock')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            check=True)
    assert result.stdout.strip() == "['sharedsock', 'sharedsock.pytest_plugin']"


def test_the_plugin_is_registered_through_the_entry_point(pytestconfig):
    import importlib.metadata

    (entry,) = [e for e in importlib.metadata.entry_points(group="pytest11") if e.name == "sharedsock"]
    assert entry.value == "sharedsock.pytest_plugin"
    plugin = pytestconfig.pluginmanager.get_plugin("sharedsock")
    assert plugin is sys.modules["sharedsock.pytest_plugin"]
