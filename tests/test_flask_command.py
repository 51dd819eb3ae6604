"""``flask runshared`` as a command: registration, import hygiene, app discovery, options.

Everything runs the real ``flask`` executable in a subprocess; ``--print-config``
shows what would be served without binding a socket.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_projects" / "flask_app"
_BIN_FLASK = Path(sys.executable).with_name("flask")
FLASK = str(_BIN_FLASK) if _BIN_FLASK.exists() else "flask"
TIMEOUT = 60


def clean_env(**extra: str) -> dict[str, str]:
    """The test environment without FLASK_*/SHAREDSOCK_* settings that would change the outcome."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLASK_", "SHAREDSOCK_", "NOTES_", "WERKZEUG_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def flask(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([FLASK, *args], cwd=cwd, env=clean_env(**env), capture_output=True,
                          text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)


def start_flask(args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen([FLASK, *args], cwd=cwd, env=clean_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=TIMEOUT)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def parse_config(result: subprocess.CompletedProcess) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    values = {}
    for line in result.stdout.splitlines():
        name, sep, value = line.partition(" = ")
        if sep and not line.startswith("#"):
            values[name.strip()] = value
    assert "flask_app" in values, result.stdout
    return values


def error_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture
def app_dir(tmp_path) -> Path:
    """A private copy of the example project (its database goes to tmp_path/data)."""
    target = tmp_path / "flask_app"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("instance", "__pycache__"))
    (target / ".flaskenv").unlink()  # tests that want it write their own
    return target


def notes_env(app_dir: Path, **extra: str) -> dict[str, str]:
    return {"NOTES_DATA_DIR": str(app_dir.parent / "data"), **extra}


# -- registration and import hygiene -------------------------------------------------------


def test_flask_help_lists_runshared(tmp_path):
    result = flask(["--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "runshared  Serve the app with sharedsock" in result.stdout


def test_runshared_help_documents_flask_and_engine_options(tmp_path):
    result = flask(["runshared", "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())  # where click wraps a line depends on the text's length
    for text in ("-h, --host", "-p, --port", "--debug / --no-debug", "--extra-files", "-b, --bind",
                 "-w, --workers", "--start-method", "--reload / --no-reload", "--max-requests",
                 "FLASK_RUNSHARED_WORKERS or SHAREDSOCK_WORKERS", "Workers:", "Timeouts:"):
        assert text in out, text
    from sharedsock.config import OPTIONS

    for option in OPTIONS:  # generated, not copied: every engine option is there
        assert option.flag in out, option.flag


_IMPORT_CHECK = """
import json, sys
from importlib.metadata import entry_points
import flask.cli
before = set(sys.modules)
(ep,) = [e for e in entry_points(group="flask.commands") if e.name == "runshared"]
command = ep.load()
print(json.dumps({"value": ep.value, "name": command.name,
                  "new": sorted(set(sys.modules) - before)}))
"""


def test_entry_point_imports_nothing_but_itself(tmp_path):
    """Flask loads the entry point for every `flask` command: it must not pull in the engine."""
    result = subprocess.run([sys.executable, "-c", _IMPORT_CHECK], cwd=tmp_path, env=clean_env(),
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["value"] == "sharedsock.integrations.flask.cli:runshared_command"
    assert data["name"] == "runshared"
    assert set(data["new"]) <= {"sharedsock", "sharedsock.integrations",
                                "sharedsock.integrations.flask", "sharedsock.integrations.flask.cli"}


_BLOCK = """
import sys
class Block:
    def __init__(self, names): self.names = names
    def find_spec(self, name, path=None, target=None):
        if any(name == n or name.startswith(n + ".") for n in self.names):
            raise ImportError("blocked by the test: " + name)
sys.meta_path.insert(0, Block(BLOCKED))
"""


def run_blocked(names: list[str], code: str, cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    script = f"BLOCKED = {names!r}\n" + _BLOCK + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script, *argv], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=TIMEOUT)


def test_a_broken_engine_breaks_only_runshared(app_dir):
    """If the engine cannot be imported, `flask --help` and other commands still work."""
    main = "from flask.cli import main\nsys.argv[0] = 'flask'\nmain()\n"
    broken = ["sharedsock.config", "sharedsock.runner", "sharedsock.appspec"]
    listing = run_blocked(broken, main, app_dir, "--app", "notesapp", "--help")
    assert listing.returncode == 0, listing.stderr
    assert "runshared" in listing.stdout and "routes" in listing.stdout
    routes = run_blocked(broken, main, app_dir, "--app", "notesapp", "routes")
    assert routes.returncode == 0, routes.stderr
    assert "/api/notes" in routes.stdout
    failed = run_blocked(broken, main, app_dir, "--app", "notesapp", "runshared")
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    assert error_line(failed).startswith("Error: sharedsock could not be loaded (")
    assert "pip install 'sharedsock[flask]'" in error_line(failed)


def test_without_flask_the_integration_says_what_to_install(tmp_path):
    result = run_blocked(["flask"], "import sharedsock.integrations.flask\n", tmp_path)
    assert result.returncode == 1
    assert "ImportError: sharedsock.integrations.flask needs Flask" in result.stderr
    assert "pip install 'sharedsock[flask]'" in result.stderr
    plain = run_blocked(["flask"], "import sharedsock, sharedsock.cli; print('ok')\n", tmp_path)
    assert plain.stdout.strip() == "ok", plain.stderr  # the engine itself never needs Flask


# -- finding the app exactly like `flask run` -------------------------------------------------


@pytest.mark.smoke
def test_app_discovery_forms(app_dir, tmp_path):
    """--app forms, FLASK_APP, .flaskenv and the wsgi.py / app.py fallbacks (run concurrently)."""
    env = notes_env(app_dir)
    dotenv_dir = tmp_path / "dotenv"
    dotenv_dir.mkdir()
    (dotenv_dir / ".flaskenv").write_text(f"FLASK_APP={app_dir / 'wsgi.py'}\n")
    fallback_wsgi = app_dir  # has wsgi.py and no .flaskenv
    fallback_app = tmp_path / "plain"
    fallback_app.mkdir()
    (fallback_app / "app.py").write_text("from flask import Flask\napp = Flask('plain_app')\n")
    cases = {
        "module": (["--app", "notesapp"], app_dir, {}, "notesapp"),
        "module:name": (["--app", "wsgi:app"], app_dir, {}, "wsgi:app"),
        "factory(args)": (["--app", "notesapp:create_app({'SECRET_KEY': 'x'})"], app_dir, {},
                          "notesapp:create_app({'SECRET_KEY': 'x'})"),
        "file path": (["--app", str(app_dir / "wsgi.py")], tmp_path, {}, str(app_dir / "wsgi.py")),
        "FLASK_APP": ([], app_dir, {"FLASK_APP": "notesapp:create_app"}, "notesapp:create_app"),
        ".flaskenv": ([], dotenv_dir, {}, str(app_dir / "wsgi.py")),
        "wsgi.py": ([], fallback_wsgi, {}, "notesapp"),
        "app.py": ([], fallback_app, {}, "plain_app"),
    }
    procs = {name: start_flask([*args, "runshared", "--print-config"], cwd, **env, **extra)
             for name, (args, cwd, extra, _) in cases.items()}
    for name, proc in procs.items():
        values = parse_config(finish(proc))
        assert values["flask_app"] == cases[name][3], name
        assert values["server_header"] == "notesapp" or name == "app.py", name  # app.config was read


def test_discovery_errors_match_flask_run(app_dir, tmp_path):
    """Same one-line error and exit code 2 as `flask run` (run concurrently)."""
    cases = [(["--app", "nope"], app_dir), (["--app", "notesapp:create_app(1, 2, 3)"], app_dir),
             ([], tmp_path)]
    env = notes_env(app_dir)
    procs = [(start_flask([*args, "runshared"], cwd, **env), start_flask([*args, "run"], cwd, **env))
             for args, cwd in cases]
    for ours, theirs in procs:
        ours, theirs = finish(ours), finish(theirs)
        assert ours.returncode == theirs.returncode == 2, ours.stderr
        assert "Traceback" not in ours.stderr
        assert error_line(ours) == error_line(theirs)
        assert error_line(ours).startswith("Error: ")


def test_an_app_that_raises_while_loading_is_one_line_and_exit_2(tmp_path):
    """As from `sharedsock crashing:app`: one line naming the user's file, nothing bound."""
    (tmp_path / "crashing.py").write_text("import os\nraise RuntimeError('no database configured')\n")
    (tmp_path / "needs_dep.py").write_text("from flask import Flask\nimport requestz_not_installed\n"
                                           "app = Flask(__name__)\n")
    cases = {"crashing": "RuntimeError: no database configured (crashing.py, line 2)",
             "needs_dep": "ModuleNotFoundError: No module named 'requestz_not_installed' "
                          "(needs_dep.py, line 2)"}
    procs = {name: start_flask(["--app", name, "runshared", "--bind", "127.0.0.1:0"], tmp_path)
             for name in cases}
    for name, proc in procs.items():
        result = finish(proc)
        assert result.returncode == 2, result.stderr
        problem = cases[name].replace("(", f"({tmp_path}/")
        assert result.stderr == f"Error: the Flask app failed to load: {problem}\n"
        assert "Listening at" not in result.stdout + result.stderr


def test_log_level_debug_adds_the_traceback_of_a_load_error(tmp_path):
    (tmp_path / "crashing.py").write_text("raise RuntimeError('no database configured')\n")
    result = flask(["--app", "crashing", "runshared", "--log-level", "debug"], tmp_path)
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert error_line(result).startswith("Error: the Flask app failed to load: RuntimeError: ")


def test_the_master_never_imports_the_app(tmp_path):
    """A module imported in the master would be inherited, stale, by every forked worker."""
    (tmp_path / "tattle.py").write_text(textwrap.dedent("""
        import os
        from flask import Flask
        with open(os.environ["TATTLE_LOG"], "a") as f:
            f.write(f"{os.getpid()}\\n")
        app = Flask(__name__)
    """))
    log = tmp_path / "imports.log"
    proc = start_flask(["--app", "tattle", "runshared", "--print-config"], tmp_path,
                       TATTLE_LOG=str(log))
    result = finish(proc)
    assert parse_config(result)["flask_app"] == "tattle"
    importers = log.read_text().split()
    assert len(importers) == 1 and int(importers[0]) != proc.pid


# -- options: precedence, host/port, debug --------------------------------------------------


def test_option_precedence(app_dir):
    """command line > FLASK_RUNSHARED_* > SHAREDSOCK_* > app.config['SHAREDSOCK'] > defaults."""
    extra = app_dir / "extra.txt"
    extra.write_text("x")
    result = flask(
        ["--app", "notesapp", "runshared", "--print-config", "--threads", "4", "--max-requests", "7",
         "--port", "6001", "--extra-files", f"{extra}{os.pathsep}{app_dir / 'wsgi.py'}"],
        app_dir,
        **notes_env(app_dir),
        SHAREDSOCK_SERVER_HEADER="from-sharedsock-env",
        SHAREDSOCK_WORKERS="5", FLASK_RUNSHARED_WORKERS="3",
        FLASK_RUNSHARED_THREADS="2",
        SHAREDSOCK_KEEPALIVE="9",
        SHAREDSOCK_BIND="unix:/tmp/never.sock",
        FLASK_RUNSHARED_START_METHOD="spawn",
    )
    values = parse_config(result)
    assert values["threads"] == "4"  # command line beats FLASK_RUNSHARED_THREADS
    assert values["workers"] == "3"  # FLASK_RUNSHARED_WORKERS beats SHAREDSOCK_WORKERS
    assert values["server_header"] == "from-sharedsock-env"  # env beats app.config
    assert values["keepalive"] == "9.0"
    assert values["max_requests"] == "7"  # command line beats app.config (10000)
    assert values["max_requests_jitter"] == "1000"  # app.config beats the engine default (0)
    assert values["bind"] == "127.0.0.1:6001"  # --port on the command line beats SHAREDSOCK_BIND
    assert values["start_method"] == "spawn"
    assert values["reload_extra_files"] == f"{extra}, {app_dir / 'wsgi.py'}"
    assert values["debugger"] == "off" and values["reload"] == "False"


def test_bind_host_and_port(app_dir):
    env = notes_env(app_dir)
    base = ["--app", "notesapp", "runshared", "--print-config"]
    procs = {
        "default": start_flask(base, app_dir, **env),
        "host+port": start_flask(base + ["-h", "::1", "-p", "8080"], app_dir, **env),
        "bind wins": start_flask(base + ["-h", "0.0.0.0", "-b", "127.0.0.1:0", "--bind",
                                         "unix:/tmp/x.sock"], app_dir, **env),
        "env bind": start_flask(base, app_dir, **env, SHAREDSOCK_BIND="127.0.0.1:7000"),
        "flask env": start_flask(base, app_dir, **env, FLASK_RUNSHARED_PORT="7001",
                                 SHAREDSOCK_BIND="127.0.0.1:7000"),
    }
    binds = {name: parse_config(finish(proc))["bind"] for name, proc in procs.items()}
    assert binds == {"default": "127.0.0.1:5000", "host+port": "[::1]:8080",
                     "bind wins": "127.0.0.1:0, unix:/tmp/x.sock", "env bind": "127.0.0.1:7000",
                     "flask env": "127.0.0.1:7001"}


def test_flask_run_host_and_port_variables(app_dir, tmp_path):
    """What `flask run` reads (often from .flaskenv) sets the default address; all else wins."""
    env = notes_env(app_dir)
    base = ["--app", "notesapp", "runshared", "--print-config"]
    run_env = {"FLASK_RUN_HOST": "0.0.0.0", "FLASK_RUN_PORT": "6100"}
    dotenv_dir = tmp_path / "dotenv"
    dotenv_dir.mkdir()
    (dotenv_dir / ".flaskenv").write_text(f"FLASK_APP={app_dir / 'wsgi.py'}\nFLASK_RUN_PORT=6200\n")
    procs = {
        "both": start_flask(base, app_dir, **env, **run_env),
        "port only": start_flask(base, app_dir, **env, FLASK_RUN_PORT="6101"),
        "--port wins": start_flask(base + ["--port", "6102"], app_dir, **env, **run_env),
        "--host wins": start_flask(base + ["-h", "::1"], app_dir, **env, **run_env),
        "FLASK_RUNSHARED_PORT wins": start_flask(base, app_dir, **env, **run_env,
                                                 FLASK_RUNSHARED_PORT="6103"),
        "SHAREDSOCK_BIND wins": start_flask(base, app_dir, **env, **run_env,
                                            SHAREDSOCK_BIND="127.0.0.1:6104"),
        ".flaskenv": start_flask(["runshared", "--print-config"], dotenv_dir, **env),
    }
    binds = {name: parse_config(finish(proc))["bind"] for name, proc in procs.items()}
    assert binds == {"both": "0.0.0.0:6100", "port only": "127.0.0.1:6101",
                     "--port wins": "0.0.0.0:6102", "--host wins": "[::1]:6100",
                     "FLASK_RUNSHARED_PORT wins": "0.0.0.0:6103",
                     "SHAREDSOCK_BIND wins": "127.0.0.1:6104", ".flaskenv": "127.0.0.1:6200"}
    bad = flask(base, app_dir, **env, FLASK_RUN_PORT="http")
    assert bad.returncode == 2
    assert error_line(bad) == "Error: FLASK_RUN_PORT: expected an integer, got 'http'"


def test_list_variables_are_split_as_the_engine_splits_them(app_dir):
    one, two = app_dir / "one.txt", app_dir / "two.txt"
    one.write_text("1")
    two.write_text("2")
    env = notes_env(app_dir)
    base = ["--app", "notesapp", "runshared", "--print-config"]
    procs = {
        "FLASK_RUNSHARED_BIND": start_flask(base, app_dir, **env,
                                            FLASK_RUNSHARED_BIND="127.0.0.1:0,unix:/tmp/x.sock"),
        "SHAREDSOCK_BIND": start_flask(base, app_dir, **env, SHAREDSOCK_BIND="127.0.0.1:0, [::1]:0"),
        "FLASK_RUNSHARED_RELOAD_EXTRA_FILES": start_flask(
            base, app_dir, **env, FLASK_RUNSHARED_RELOAD_EXTRA_FILES=f"{one},{two}"),
    }
    got = {name: parse_config(finish(proc)) for name, proc in procs.items()}
    assert got["FLASK_RUNSHARED_BIND"]["bind"] == "127.0.0.1:0, unix:/tmp/x.sock"
    assert got["SHAREDSOCK_BIND"]["bind"] == "127.0.0.1:0, [::1]:0"
    assert got["FLASK_RUNSHARED_RELOAD_EXTRA_FILES"]["reload_extra_files"] == f"{one}, {two}"


def test_debug_logs_requests_to_stdout_unless_told_otherwise(app_dir, tmp_path):
    env = notes_env(app_dir)
    base = ["--app", "notesapp", "runshared", "--print-config"]
    log = tmp_path / "access.log"
    procs = {
        "--debug": start_flask(base + ["--debug"], app_dir, **env),
        "FLASK_DEBUG=1": start_flask(base, app_dir, **env, FLASK_DEBUG="1"),
        "no debug": start_flask(base, app_dir, **env),
        "--debug --access-log FILE": start_flask(base + ["--debug", "--access-log", str(log)],
                                                 app_dir, **env),
        "--debug, turned off": start_flask(base + ["--debug", "--access-log", ""], app_dir, **env),
        "--debug, env": start_flask(base + ["--debug"], app_dir, **env, SHAREDSOCK_ACCESS_LOG=str(log)),
    }
    got = {name: parse_config(finish(proc))["access_log"] for name, proc in procs.items()}
    assert got == {"--debug": "-", "FLASK_DEBUG=1": "-", "no debug": "(none)",
                   "--debug --access-log FILE": str(log), "--debug, turned off": "",
                   "--debug, env": str(log)}


def test_misspelt_flag_gets_clicks_suggestion(app_dir):
    result = flask(["--app", "notesapp", "runshared", "--wrokers", "2"], app_dir, **notes_env(app_dir))
    assert result.returncode == 2
    line = error_line(result)  # click lists every close option when there are several
    assert line.startswith("Error: No such option '--wrokers'.") and "'--workers'" in line, line


def test_unknown_variables_are_warned_about_and_the_command_goes_on(app_dir):
    result = flask(["--app", "notesapp", "runshared", "--print-config"], app_dir, **notes_env(app_dir),
                   FLASK_RUNSHARED_WROKERS="7", SHAREDSOCK_THRADS="4", FLASK_RUNSHARED_HOST="0.0.0.0",
                   FLASK_RUNSHARED_PRINT_CONFIG="1")
    assert parse_config(result)["workers"] != "7"
    assert result.stderr.splitlines() == [
        ("sharedsock: warning: FLASK_RUNSHARED_WROKERS is not an option and is ignored; "
         "did you mean FLASK_RUNSHARED_WORKERS?"),
        ("sharedsock: warning: SHAREDSOCK_THRADS is not an option and is ignored; "
         "did you mean SHAREDSOCK_THREADS?"),
    ]


def test_debug_runs_one_worker_with_the_debugger_and_reload(app_dir):
    env = notes_env(app_dir)
    base = ["--app", "notesapp", "runshared", "--print-config"]
    procs = {
        "debug": start_flask(base + ["--debug"], app_dir, **env),
        "group --debug": start_flask(["--app", "notesapp", "--debug", "runshared", "--print-config"],
                                     app_dir, **env),
        "debug + workers": start_flask(base + ["--debug", "--workers", "3"], app_dir, **env),
        "debug, no reload": start_flask(base + ["--debug", "--no-reload"], app_dir, **env),
        "debugger forced": start_flask(base + ["--debugger", "-w", "2"], app_dir, **env),
    }
    results = {name: finish(proc) for name, proc in procs.items()}
    got = {name: {k: v for k, v in parse_config(r).items() if k in ("workers", "reload", "debugger")}
           for name, r in results.items()}
    assert got["debug"] == {"workers": "1", "reload": "True", "debugger": "on"}
    assert got["group --debug"] == got["debug"]
    assert got["debug + workers"] == {"workers": "3", "reload": "True", "debugger": "off"}
    assert "# Debugger: off, because 3 workers were asked for" in results["debug + workers"].stdout
    assert got["debug, no reload"] == {"workers": "1", "reload": "False", "debugger": "on"}
    assert got["debugger forced"] == {"workers": "2", "reload": "False", "debugger": "on"}


BAD_OPTIONS = [
    (["--workers", "x"], {}, "Error: --workers: expected an integer, got 'x'"),
    ([], {"FLASK_RUNSHARED_TIMEOUT": "soon"},
     "Error: FLASK_RUNSHARED_TIMEOUT: expected a number of seconds, got 'soon'"),
    ([], {"SHAREDSOCK_START_METHOD": "thread"},
     "Error: SHAREDSOCK_START_METHOD: expected one of fork, spawn, got 'thread'"),
    ([], {"NOTES_SHAREDSOCK": '{"workers": "many"}'},
     "Error: app.config['SHAREDSOCK']['workers']: expected an integer, got 'many'"),
    ([], {"NOTES_SHAREDSOCK": '{"wokers": 2}'}, "Error: app.config['SHAREDSOCK']: unknown option "
                                                "'wokers' (use the names of the command-line flags "
                                                "with underscores, e.g. 'max_requests')"),
    ([], {"NOTES_SHAREDSOCK": "[1, 2]"}, "Error: app.config['SHAREDSOCK'] must be a dict of "
                                         "sharedsock options such as {'workers': 4}, got list"),
]


def test_bad_options_are_one_line_and_exit_2(app_dir):
    """Each error names where the bad value came from (run concurrently)."""
    procs = [(start_flask(["--app", "notesapp", "runshared", "--print-config", *args], app_dir,
                          **notes_env(app_dir), **env), message)
             for args, env, message in BAD_OPTIONS]
    for proc, message in procs:
        result = finish(proc)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert error_line(result) == message


def test_engine_errors_at_start_are_one_line(app_dir):
    result = flask(["--app", "notesapp", "runshared", "--bind", "127.0.0.1:0",
                    "--error-log", str(app_dir / "no" / "such" / "dir.log")], app_dir,
                   **notes_env(app_dir))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert error_line(result).startswith("Error: --error-log ")


_CUSTOM_GROUP = """
from flask.cli import FlaskGroup
from notesapp import create_app

cli = FlaskGroup(create_app=lambda: create_app())

if __name__ == "__main__":
    cli()
"""


def test_custom_flask_group_refuses_spawn_clearly(app_dir):
    (app_dir / "manage.py").write_text(_CUSTOM_GROUP)
    result = subprocess.run([sys.executable, "manage.py", "runshared", "--start-method", "spawn"],
                            cwd=app_dir, env=clean_env(**notes_env(app_dir)), capture_output=True,
                            text=True, timeout=TIMEOUT)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    line = error_line(result)
    assert line.startswith("Error: --start-method spawn: this command builds the app with "
                           "FlaskGroup(create_app=...)")
    assert "use --start-method fork" in line


def test_packaging_lists_the_integration_and_its_entry_point():
    """An editable install imports an unlisted package; the wheel would silently lack it."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    base = ROOT / "integrations" / "flask"
    for init in base.rglob("__init__.py"):
        assert ".".join(("sharedsock", "integrations", "flask") + init.parent.relative_to(base).parts) \
            in listed
    commands = project["project"]["entry-points"]["flask.commands"]
    assert commands == {"runshared": "sharedsock.integrations.flask.cli:runshared_command"}
