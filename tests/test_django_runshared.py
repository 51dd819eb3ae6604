"""``python manage.py runshared`` on the example site, as real processes on real sockets.

Every server is ``manage.py runshared 127.0.0.1:0`` in its own process (so the
site's settings never leak into this pytest process), its address read from
the log. Requests use fresh connections so they spread over the workers.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.parse
from http.cookies import SimpleCookie
from pathlib import Path

import pytest

import sharedsock
from conftest import DEADLINE, BackgroundLoop, wait_for
from sharedsock.config import OPTIONS
from sharedsock.integrations.django.binds import addrport_to_bind

SITE = Path(__file__).resolve().parent.parent / "example_projects" / "django_site"
MANAGE = SITE / "manage.py"


# -- helpers -------------------------------------------------------------------


def site_env(db: Path | None = None, **extra: str) -> dict[str, str]:
    """A clean environment: no settings module or SHAREDSOCK_* leaking in from the caller."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SHAREDSOCK_", "EXAMPLE_SITE_")) and k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONUNBUFFERED"] = "1"
    if db is not None:
        env["EXAMPLE_SITE_DB"] = str(db)
    env.update(extra)
    return env


def manage(*args: str, env: dict | None = None, cwd: Path | None = None,
           manage_py: Path = MANAGE) -> subprocess.CompletedProcess:
    """A manage.py command that is expected to finish on its own."""
    return subprocess.run([sys.executable, str(manage_py), *args], env=env or site_env(),
                          cwd=str(cwd or SITE), capture_output=True, text=True, timeout=DEADLINE * 2)


def runshared(start_server, args: list[str], env: dict, workers: int = 2,
              manage_py: Path = MANAGE, wait: bool = True):
    return start_server(args, workers=workers, wait=wait, env=env,
                        command=[sys.executable, str(manage_py), "runshared"])


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("django_db") / "db.sqlite3"
    result = manage("migrate", "--noinput", env=site_env(db))
    assert result.returncode == 0, result.stdout + result.stderr
    return db


def copy_site(tmp_path: Path) -> Path:
    target = tmp_path / "site"
    shutil.copytree(SITE, target, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3", "staticfiles"))
    return target


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.cookies = [v for k, v in headers if k.lower() == "set-cookie"]
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def served_by(self) -> int:
        return int(self.headers["x-served-by"])

    def json(self) -> dict:
        return json.loads(self.body)


class Client:
    """A browser in miniature: one fresh connection per request, cookies kept."""

    def __init__(self, server) -> None:
        self.host, self.port = server.address
        self.cookies: dict[str, str] = {}

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request(self, method: str, path: str, form: dict | None = None,
                headers: dict | None = None) -> Response:
        all_headers = dict(headers or {})
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn = http.client.HTTPConnection(self.host, self.port, timeout=DEADLINE)
        try:
            conn.request(method, path, body=body, headers=all_headers)
            raw = conn.getresponse()
            response = Response(raw.status, raw.getheaders(), raw.read())
        finally:
            conn.close()
        for header in response.cookies:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return response

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(self, path: str, form: dict) -> Response:
        return self.request("POST", path, form, headers={"Origin": self.origin})


def csrf_token(page: Response) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert match, page.text[:500]
    return match.group(1)


def open_files(pid: int) -> list[str]:
    fd_dir = Path(f"/proc/{pid}/fd")
    files = []
    for fd in fd_dir.iterdir():
        try:
            files.append(os.readlink(fd))
        except OSError:
            pass
    return files


class Poller(BackgroundLoop):
    """GET a path on fresh connections in a background thread; every failure is recorded."""

    def __init__(self, server, path: str) -> None:
        super().__init__()
        self.client = Client(server)
        self.path = path
        self.ok = 0
        self.last: Response | None = None
        self.failures: list[str] = []

    def step(self) -> None:
        try:
            response = self.client.get(self.path)
        except Exception as exc:
            self.failures.append(repr(exc))
            return
        if response.status != 200:
            self.failures.append(f"status {response.status}: {response.text[:300]}")
        else:
            self.ok += 1
            self.last = response

    def wait_for_json(self, key: str, value, server) -> None:
        def seen():
            assert not self.failures, self.failures
            return self.last is not None and self.last.json().get(key) == value

        try:
            wait_for(seen, message=f"{key}={value!r} from the server")
        except AssertionError:
            print(server.log())
            raise

    def wait_for_more(self, count: int) -> None:
        target = self.ok + count
        wait_for(lambda: self.ok >= target or self.failures, message=f"{count} more requests")
        assert not self.failures, self.failures


# -- addrport, like runserver ------------------------------------------------------


@pytest.mark.parametrize("addrport, ipv6, bind", [
    (None, False, "127.0.0.1:8000"),
    (None, True, "[::1]:8000"),
    ("8001", False, "127.0.0.1:8001"),
    ("8001", True, "[::1]:8001"),
    ("0.0.0.0:8001", False, "0.0.0.0:8001"),
    ("0:8001", False, "0.0.0.0:8001"),
    ("[::1]:8001", False, "[::1]:8001"),
    ("[2001:db8::1]:80", True, "[2001:db8::1]:80"),
    ("localhost:8001", False, "localhost:8001"),
])
def test_addrport_means_what_it_means_to_runserver(addrport, ipv6, bind):
    assert addrport_to_bind(addrport, ipv6) == bind


@pytest.mark.parametrize("addrport, ipv6", [
    ("nonsense", False), ("8000:localhost", False), ("127.0.0.1:", False), ("1.2.3.4:8000", True),
    ("127.0.0.1:99999", False), ("8000\n", False),
])
def test_bad_addrport_is_refused(addrport, ipv6):
    with pytest.raises(ValueError):
        addrport_to_bind(addrport, ipv6)


# -- the command without a server -------------------------------------------------------


@pytest.mark.smoke
def test_help_documents_runserver_options_and_every_engine_option():
    result = manage("help", "runshared")
    assert result.returncode == 0, result.stderr
    for flag in ["addrport", "--ipv6", "--noreload", "--nostatic", "--insecure", "--skip-checks",
                 "--settings", "--pythonpath"] + [o.flag for o in OPTIONS]:
        assert flag in result.stdout, flag
    assert "SHAREDSOCK_WORKERS" in result.stdout


def _printed_config(stdout: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in stdout.splitlines()) if _}


@pytest.mark.parametrize("args, env, expected", [
    ([], {}, {"bind": "127.0.0.1:8000", "workers": "2", "reload": "True"}),
    (["8001", "--bind", "unix:/tmp/example.sock"], {},
     {"bind": "127.0.0.1:8001, unix:/tmp/example.sock"}),
    (["-6"], {}, {"bind": "[::1]:8000"}),
    ([], {"SHAREDSOCK_WORKERS": "3", "SHAREDSOCK_BIND": "127.0.0.1:9001"},
     {"workers": "3", "bind": "127.0.0.1:9001"}),
    (["--workers", "4", "--threads", "2"], {"SHAREDSOCK_WORKERS": "3"}, {"workers": "4", "threads": "2"}),
    (["--noreload"], {}, {"reload": "False"}),
    ([], {"EXAMPLE_SITE_DEBUG": "0"}, {"reload": "False"}),
    (["--reload"], {"EXAMPLE_SITE_DEBUG": "0"}, {"reload": "True"}),
    ([], {}, {"access_log": "-"}),  # DEBUG: requests on the console, as runserver shows them
    ([], {"EXAMPLE_SITE_DEBUG": "0"}, {"access_log": "(none)"}),
    (["--access-log", "/tmp/x.log"], {}, {"access_log": "/tmp/x.log"}),
    ([], {"SHAREDSOCK_ACCESS_LOG": "/tmp/y.log"}, {"access_log": "/tmp/y.log"}),
    ([], {"SHAREDSOCK_BIND": "127.0.0.1:9001,[::1]:9002"}, {"bind": "127.0.0.1:9001, [::1]:9002"}),
])
def test_settings_environment_and_flags_layer_in_that_order(args, env, expected):
    """settings.SHAREDSOCK (workers 2) < SHAREDSOCK_* < flags; reload follows DEBUG unless told."""
    result = manage("runshared", "--print-config", *args, env=site_env(**env))
    assert result.returncode == 0, result.stderr
    config = _printed_config(result.stdout)
    for key, value in expected.items():
        assert config[key] == value, (key, result.stdout)


def test_reload_watches_the_project_templates_but_not_djangos():
    config = _printed_config(manage("runshared", "--print-config").stdout)
    watched = config["reload_extra_files"]
    assert str(SITE / "guestbook" / "templates" / "guestbook" / "index.html") in watched
    assert "admin/login.html" not in watched


@pytest.mark.parametrize("args, env, message", [
    (["nonsense"], {}, '"nonsense" is not a valid port number or address:port pair.'),
    (["127.0.0.1:99999"], {}, "is not a valid port number"),
    (["--workers", "0"], {}, "--workers: must be at least 1"),
    (["--start-method", "vfork"], {}, "--start-method: expected one of fork, spawn"),
    (["--ipv6", "--bind", "127.0.0.1:0"], {}, "--ipv6 applies to addrport"),
    (["--bind", "127.0.0.1:http"], {}, "is not a port number"),
    (["--wokers", "2"], {}, "unknown option --wokers (did you mean --workers?)"),
    ([], {"SHAREDSOCK_TIMEOUT": "soon"}, "SHAREDSOCK_TIMEOUT: expected a number of seconds"),
    ([], {"EXAMPLE_SITE_DEBUG": "0", "EXAMPLE_SITE_ALLOWED_HOSTS": ""},
     "You must set settings.ALLOWED_HOSTS if DEBUG is False."),
])
def test_bad_input_is_one_line_and_exit_code_2(args, env, message, tmp_path):
    result = manage("runshared", *args, env=site_env(tmp_path / "db.sqlite3", **env))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Listening at" not in result.stdout + result.stderr


def test_access_log_from_settings_sharedsock_beats_the_debug_default(tmp_path):
    (tmp_path / "quiet_settings.py").write_text(
        "from exampleproject.settings import *  # noqa: F401,F403\nSHAREDSOCK = {'access_log': ''}\n")
    result = manage("runshared", "--print-config", "--settings", "quiet_settings", "--pythonpath",
                    str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert _printed_config(result.stdout)["access_log"] == ""


def test_unknown_environment_variable_is_warned_about(tmp_path):
    result = manage("runshared", "--print-config", env=site_env(SHAREDSOCK_WROKERS="7"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        ("sharedsock: warning: SHAREDSOCK_WROKERS is not an option and is ignored; "
         "did you mean SHAREDSOCK_WORKERS?")]


def test_unknown_key_in_settings_sharedsock_is_refused(tmp_path):
    (tmp_path / "typo_settings.py").write_text(
        "from exampleproject.settings import *  # noqa: F401,F403\nSHAREDSOCK = {'wokers': 4}\n")
    result = manage("runshared", "--settings", "typo_settings", "--pythonpath", str(tmp_path),
                    env=site_env(tmp_path / "db.sqlite3"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == "CommandError: settings.SHAREDSOCK: unknown option 'wokers'"


def test_taken_port_is_reported_in_one_line_by_the_master(tmp_path):
    """Binding happens after the handover to the clean master; its refusal still reads like the rest."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = manage("runshared", f"127.0.0.1:{port}", "--noreload",
                        env=site_env(tmp_path / "db.sqlite3"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"CommandError: cannot bind 127.0.0.1:{port}: address already in use")
    assert "Starting sharedsock" not in result.stdout  # the banner waits for the bind
    assert "Quit the server" not in result.stdout


# -- serving -------------------------------------------------------------------------------


def test_failing_system_check_stops_before_binding(tmp_path, start_server):
    """The admin needs SessionMiddleware (admin.E410); without it nothing may bind."""
    (tmp_path / "broken_settings.py").write_text(
        "from exampleproject.settings import *  # noqa: F401,F403\n"
        "MIDDLEWARE = [m for m in MIDDLEWARE if not m.endswith('SessionMiddleware')]  # noqa: F405\n")
    sock = tmp_path / "s.sock"
    args = ["runshared", "--settings", "broken_settings", "--pythonpath", str(tmp_path),
            "--bind", f"unix:{sock}", "--workers", "1"]
    result = manage(*args, env=site_env(tmp_path / "db.sqlite3"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "admin.E410" in result.stderr
    assert "Listening at" not in result.stdout + result.stderr
    assert not sock.exists()

    # The same command with --skip-checks does bind: the checks were what stopped it.
    server = start_server(args[1:] + ["--skip-checks", "--noreload"], workers=1, env=site_env(
        tmp_path / "db.sqlite3"), command=[sys.executable, str(MANAGE), "runshared"])
    assert sock.exists()
    assert "Performing system checks" not in server.log()
    assert server.stop() == 0


@pytest.mark.smoke
def test_serves_the_site_from_every_worker(start_server, start_method, migrated_db):
    server = runshared(start_server, ["127.0.0.1:0", "--workers", "2", "--start-method", start_method],
                       env=site_env(migrated_db))
    log = server.log()
    assert "System check identified no issues" in log
    assert f"master pid {server.proc.pid}" in log  # manage.py's own process became the master
    assert f"Starting sharedsock {sharedsock.__version__} at {server.url}: 2 worker(s)" in log
    booted = set(server.booted_pids())
    assert len(booted) == 2
    seen: set[int] = set()

    # The admin login page and its CSS, served by the static files handler (DEBUG is on).
    client = Client(server)
    login = client.get("/admin/login/")
    assert login.status == 200, login.text[:500]
    sheets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', login.text)
    assert "/static/admin/css/base.css" in sheets
    for sheet in sheets:
        css = client.get(sheet)
        assert css.status == 200, sheet
        assert css.headers["content-type"].startswith("text/css")
        assert css.body

    api = client.get("/api/entries/")
    assert api.status == 200
    server.wait_log(r'"GET /api/entries/ HTTP/1.1" 200 ')  # DEBUG is on: requests are logged
    assert api.headers["content-type"] == "application/json"
    assert api.json()["pid"] == api.served_by
    entries_before = api.json()["count"]

    # Without the token a POST is refused.
    refused = Client(server).post("/", {"name": "Mallory", "message": "no token"})
    assert refused.status == 403

    # The form from one worker is accepted by another: CSRF state lives in the cookie.
    signed = 0

    def signed_across_workers() -> bool:
        nonlocal signed
        visitor = Client(server)
        form = visitor.get("/")
        assert form.status == 200
        assert f"pid={form.served_by}" in form.text
        posted = visitor.post("/", {"csrfmiddlewaretoken": csrf_token(form), "name": f"visitor {signed}",
                                    "message": "hello"})
        assert posted.status == 302, posted.text[:500]
        assert posted.headers["location"] == "/"
        signed += 1
        seen.update((form.served_by, posted.served_by))
        return form.served_by != posted.served_by

    wait_for(signed_across_workers, message="a form from one worker posted to the other")
    assert client.get("/api/entries/").json()["count"] == entries_before + signed

    wait_for(lambda: seen.add(client.get("/").served_by) or seen == booted,
             message="responses from both workers")
    assert seen == booted

    # Nothing the command opened before exec (the SQLite file of the checks) is held by the master.
    assert str(migrated_db) not in open_files(server.proc.pid)

    assert server.stop(signal.SIGTERM) == 0


def test_settings_and_pythonpath_reach_spawned_workers(start_server, tmp_path):
    """--settings/--pythonpath name modules outside the project; settings.SHAREDSOCK picks spawn."""
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "custom_settings.py").write_text(
        "from exampleproject.settings import *  # noqa: F401,F403\n"
        "ROOT_URLCONF = 'custom_urls'\n"
        "GUESTBOOK_TITLE = 'Custom title'\n"
        "SHAREDSOCK = {'workers': 1, 'start_method': 'spawn'}\n")
    (extra / "custom_urls.py").write_text(
        "import os\n"
        "from django.conf import settings\n"
        "from django.http import HttpResponse\n"
        "from django.urls import include, path\n\n"
        "def whoami(request):\n"
        "    return HttpResponse(f\"{os.environ['DJANGO_SETTINGS_MODULE']} {settings.GUESTBOOK_TITLE}\")\n\n"
        "urlpatterns = [path('whoami/', whoami), path('', include('exampleproject.urls'))]\n")
    server = runshared(start_server, ["127.0.0.1:0", "--settings", "custom_settings", "--pythonpath",
                                      str(extra), "--noreload", "--nostatic"],
                       env=site_env(tmp_path / "fresh.sqlite3"), workers=1)
    log = server.log()
    assert "unapplied migration(s)" in log  # a fresh database: warned about, served anyway
    assert "Start method: spawn, 1 worker(s)" in log
    response = Client(server).get("/whoami/")
    assert response.status == 200
    assert response.text == "custom_settings Custom title"
    assert Client(server).get("/static/admin/css/base.css").status == 404  # --nostatic, DEBUG on
    assert server.stop() == 0


def test_code_broken_at_start_fails_fast_or_waits_for_the_fix_under_reload(start_server, migrated_db,
                                                                          tmp_path):
    site = copy_site(tmp_path)
    db = tmp_path / "db.sqlite3"
    shutil.copy(migrated_db, db)
    env = site_env(db, PYTHONDONTWRITEBYTECODE="1")
    views = site / "guestbook" / "views.py"
    original = views.read_text()
    views.write_text(original + "\ndef broken(:\n")

    result = manage("runshared", "127.0.0.1:0", "--noreload", env=env, manage_py=site / "manage.py")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        f"CommandError: system checks failed: SyntaxError: invalid syntax ({views}, line "
        f"{original.count(chr(10)) + 2})"]

    server = runshared(start_server, ["127.0.0.1:0", "--workers", "1"], env=env,
                       manage_py=site / "manage.py", wait=False)
    server.wait_log(r"app failed to load: SyntaxError.*waiting for a file change")
    views.write_text(original.replace('GREETING = "Welcome"', 'GREETING = "Fixed while serving"'))
    server.wait_ready(workers=1)
    response = Client(server).get("/api/entries/")
    assert response.status == 200
    assert response.json()["greeting"] == "Fixed while serving"
    assert server.stop() == 0


@pytest.mark.smoke
def test_reload_serves_edited_code_without_refusing_a_request(start_server, start_method, migrated_db,
                                                              tmp_path):
    site = copy_site(tmp_path)
    db = tmp_path / "db.sqlite3"
    shutil.copy(migrated_db, db)
    env = site_env(db, PYTHONDONTWRITEBYTECODE="1")
    server = runshared(start_server, ["127.0.0.1:0", "--workers", "2", "--start-method", start_method],
                       env=env, manage_py=site / "manage.py")
    assert "reload on" in server.log()  # DEBUG is on in the example site
    views = site / "guestbook" / "views.py"
    original = views.read_text()
    assert 'GREETING = "Welcome"' in original

    with Poller(server, "/api/entries/") as poller:
        poller.wait_for_json("greeting", "Welcome", server)
        views.write_text(original.replace('GREETING = "Welcome"', 'GREETING = "Edited once"'))
        poller.wait_for_json("greeting", "Edited once", server)
        server.wait_log(r"worker \d+ \(generation 1\) exited", count=2)

        # A syntax error: the new generation fails to load, the previous one keeps serving,
        # and the watcher keeps watching.
        views.write_text(original.replace('GREETING = "Welcome"', 'GREETING = "Edited once"')
                         + "\ndef broken(:\n")
        server.wait_log(r"reload failed: SyntaxError")
        poller.wait_for_more(10)
        assert poller.last.json()["greeting"] == "Edited once"

        views.write_text(original.replace('GREETING = "Welcome"', 'GREETING = "Fixed after the error"'))
        poller.wait_for_json("greeting", "Fixed after the error", server)

    assert not poller.failures, poller.failures

    # Templates are watched too: Django's cached loader would otherwise keep the old one.
    template = site / "guestbook" / "templates" / "guestbook" / "index.html"
    template.write_text(template.read_text().replace("Leave a note.", "Sign below, please."))
    client = Client(server)
    wait_for(lambda: "Sign below, please." in client.get("/").text, message="the edited template")

    assert server.stop() == 0


def test_every_django_integration_package_is_listed_for_the_wheel():
    """An editable install imports a package missing from pyproject's list; the wheel would lack it."""
    tomllib = pytest.importorskip("tomllib")
    root = SITE.parent.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    base = root / "integrations" / "django"
    for init in base.rglob("__init__.py"):
        package = ".".join(("sharedsock", "integrations", "django") + init.parent.relative_to(base).parts)
        assert package in listed, package
    assert "sharedsock.integrations.django.management.commands" in listed
