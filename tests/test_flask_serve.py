"""``flask runshared`` end to end: the example app served by real workers over real sockets.

Each test copies the example project to a temporary directory (its SQLite
database and uploads go there too), starts ``flask --app notesapp runshared
--bind 127.0.0.1:0`` and reads the address from the log.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from conftest import DEADLINE, http_get, pid_of, wait_for

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_projects" / "flask_app"
_BIN_FLASK = Path(sys.executable).with_name("flask")
FLASK = str(_BIN_FLASK) if _BIN_FLASK.exists() else "flask"
CLEARED = ("FLASK_APP", "FLASK_DEBUG", "FLASK_RUNSHARED_WORKERS", "SHAREDSOCK_WORKERS",
           "SHAREDSOCK_START_METHOD", "SHAREDSOCK_RELOAD", "SHAREDSOCK_BIND")


@pytest.fixture
def app_dir(tmp_path) -> Path:
    target = tmp_path / "flask_app"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("instance", "__pycache__"))
    return target


@pytest.fixture
def serve_notes(start_server, app_dir, monkeypatch):
    """``serve_notes(*args, workers=N)`` -> a ready server running the copied example app."""
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)

    def serve(*args: str, workers: int = 1, command: list[str] | None = None, wait: bool = True):
        env = {"NOTES_DATA_DIR": str(app_dir.parent / "data"), "PYTHONDONTWRITEBYTECODE": "1"}
        return start_server(["runshared", "--bind", "127.0.0.1:0", *args], workers=workers,
                            command=command or [FLASK, "--app", "notesapp"], env=env, cwd=app_dir,
                            wait=wait)

    return serve


def request(server, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, dict, bytes]:
    """One request on a fresh connection; returns (status, lower-cased headers, body)."""
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=DEADLINE)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def multipart(field: str, filename: str, content: bytes) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    body += content + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def tagline(server) -> str:
    status, _, body = request(server, "GET", "/api/status")
    assert status == 200, body
    return json.loads(body)["tagline"]


def set_tagline(app_dir: Path, text: str) -> None:
    """Edit the app's code; the new text has a new length, so a stale .pyc can never match."""
    pages = app_dir / "notesapp" / "pages.py"
    source = pages.read_text()
    start = source.index('TAGLINE = "') + len('TAGLINE = "')
    end = source.index('"', start)
    pages.write_text(source[:start] + text + source[end:])


@pytest.mark.smoke
def test_serves_the_example_app(serve_notes, app_dir, start_method):
    server = serve_notes("--workers", "2", "--start-method", start_method, workers=2)
    assert "Serving Flask app 'notesapp'" in server.log()

    status, headers, body = request(server, "POST", "/api/notes", json.dumps({"title": "json"}).encode(),
                                    {"Content-Type": "application/json"})
    assert status == 201, body
    assert headers["server"] == "notesapp"  # app.config["SHAREDSOCK"] set it
    assert json.loads(body)["title"] == "json"

    status, headers, _ = request(server, "POST", "/notes", b"title=from+a+form&body=hello",
                                 {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303 and headers["location"] == "/"

    data = bytes(range(256)) * 64
    body, form_headers = multipart("file", "blob.bin", data)
    status, _, _ = request(server, "POST", "/uploads", body, form_headers)
    assert status == 303
    assert request(server, "GET", "/uploads/blob.bin")[2] == data

    status, headers, page = request(server, "GET", "/")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert b"from a form" in page and b"blob.bin</a> (16384 bytes)" in page

    notes = json.loads(request(server, "GET", "/api/notes")[2])
    assert [n["title"] for n in notes] == ["from a form", "json"]

    status, headers, css = request(server, "GET", "/static/style.css")
    assert status == 200 and headers["content-type"].startswith("text/css")
    assert css == (EXAMPLE / "notesapp" / "static" / "style.css").read_bytes()

    booted = set(server.booted_pids())
    seen: set[int] = set()
    for _ in range(300):
        status, _, body = http_get(server, "/worker")
        assert status == 200
        seen.add(pid_of(body))
        if seen == booted:
            break
    assert seen == booted and len(seen) == 2

    # SIGHUP: a new generation imports the changed code; the socket stays open.
    set_tagline(app_dir, "New code after SIGHUP")
    server.send(signal.SIGHUP)
    wait_for(lambda: tagline(server) == "New code after SIGHUP", message="the new code to be served")
    assert server.stop() == 0


@pytest.mark.smoke
def test_reload_on_code_change_without_refusing_connections(serve_notes, app_dir, start_method):
    server = serve_notes("--reload", "--workers", "2", "--start-method", start_method, workers=2)
    assert tagline(server) == "Notes, served by sharedsock"

    results: list[object] = []
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                results.append(tagline(server))
            except Exception as exc:
                results.append(exc)

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        set_tagline(app_dir, "Reloaded by --reload")
        wait_for(lambda: "Reloaded by --reload" in results, message="the edited code to be served")

        # A syntax error: the reload fails, the previous workers keep serving, the watcher waits.
        pages = app_dir / "notesapp" / "pages.py"
        good = pages.read_text()
        pages.write_text(good + "\ndef broken(:\n")
        server.wait_log(r"reload failed: .*SyntaxError")
        count = len(results)
        wait_for(lambda: len(results) > count + 3, message="requests served after the failed reload")

        pages.write_text(good.replace("Reloaded by --reload", "Fixed and reloaded"))
        wait_for(lambda: "Fixed and reloaded" in results, message="the fixed code to be served")
    finally:
        stop.set()
        thread.join(DEADLINE)
    errors = [r for r in results if not isinstance(r, str)]
    assert not errors, f"{len(errors)} of {len(results)} requests failed: {errors[:3]}"
    assert server.stop() == 0


def test_debug_runs_one_worker_with_the_debugger(start_server, tmp_path):
    (tmp_path / "app.py").write_text(
        "from flask import Flask\n"
        "app = Flask(__name__)\n"
        "@app.get('/boom')\n"
        "def boom():\n"
        "    raise ValueError('debug me')\n")
    server = start_server(["runshared", "--debug", "--bind", "127.0.0.1:0"], workers=1,
                          command=[FLASK], cwd=tmp_path, env={"PYTHONDONTWRITEBYTECODE": "1"})
    log = server.log()
    assert "Debug mode: on" in log
    assert "Debugger: on, in a single worker" in log
    assert "1 worker(s)" in log
    server.wait_log(r"Debugger PIN: \d")
    status, _, body = http_get(server, "/boom")
    assert status == 500
    assert b"ValueError: debug me" in body and b"Werkzeug Debugger" in body
    server.wait_log(r'"GET /boom HTTP/1.1" 500 ')  # --debug logs requests, as `flask run` does
    assert server.stop() == 0


def test_debug_with_workers_turns_the_debugger_off(start_server, tmp_path):
    (tmp_path / "app.py").write_text(
        "from flask import Flask\n"
        "app = Flask(__name__)\n"
        "@app.get('/boom')\n"
        "def boom():\n"
        "    raise ValueError('debug me')\n")
    server = start_server(["runshared", "--debug", "-w", "2", "--bind", "127.0.0.1:0"], workers=2,
                          command=[FLASK], cwd=tmp_path, env={"PYTHONDONTWRITEBYTECODE": "1"})
    assert "Debugger: off, because 2 workers were asked for" in server.log()
    status, _, body = http_get(server, "/boom")
    assert status == 500 and b"Werkzeug Debugger" not in body
    assert server.stop() == 0


_CUSTOM_GROUP = """
from flask.cli import FlaskGroup
from notesapp import create_app

cli = FlaskGroup(create_app=lambda: create_app())

if __name__ == "__main__":
    cli()
"""


def test_custom_flask_group_serves_in_fork_mode(serve_notes, app_dir):
    (app_dir / "manage.py").write_text(_CUSTOM_GROUP)
    server = serve_notes("--workers", "2", "--start-method", "fork", workers=2,
                         command=[sys.executable, "manage.py"])
    assert tagline(server) == "Notes, served by sharedsock"
    assert request(server, "GET", "/")[0] == 200
    assert server.stop() == 0


def test_custom_flask_group_with_debug(serve_notes, app_dir):
    """The app built in the master gets the debugger; reload is on but cannot bring new code."""
    (app_dir / "manage.py").write_text(_CUSTOM_GROUP)
    server = serve_notes("--debug", workers=1, command=[sys.executable, "manage.py"])
    server.wait_log(r"Debugger is active; Debugger PIN: \d")
    assert "reloads restart the workers but cannot pick up code changes" in server.log()
    assert "1 worker(s)" in server.log()
    assert tagline(server) == "Notes, served by sharedsock"
    assert server.stop() == 0


def test_a_comma_separated_bind_variable_binds_every_address(start_server, app_dir, monkeypatch):
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    env = {"NOTES_DATA_DIR": str(app_dir.parent / "data"), "PYTHONDONTWRITEBYTECODE": "1",
           "FLASK_RUNSHARED_BIND": "127.0.0.1:0,127.0.0.1:0"}
    server = start_server(["--app", "notesapp", "runshared", "--workers", "1"], command=[FLASK],
                          env=env, cwd=app_dir)
    urls = [m.group(1) for m in server.wait_log(r"Listening at: (\S+)", count=2)]
    assert len(set(urls)) == 2, server.log()
    for url in urls:
        server.url = url
        assert tagline(server) == "Notes, served by sharedsock"
    assert server.stop() == 0


def test_no_banner_before_a_bind_that_fails(app_dir, monkeypatch):
    """"Serving Flask app" is logged by the master once it holds the address, never before
    an "address already in use"."""
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([FLASK, "--app", "notesapp", "runshared", "--port", str(port)],
                                cwd=app_dir, capture_output=True, text=True, timeout=DEADLINE * 2,
                                env={**os.environ, "NOTES_DATA_DIR": str(app_dir.parent / "data")},
                                stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr == f"Error: cannot bind 127.0.0.1:{port}: address already in use\n"
