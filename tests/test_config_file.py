"""The Python config file (``--config``, ``./sharedsock.conf.py``) and ``--check-config``.

Precedence is checked through ``runner.resolve``, the one function every front end
uses, and end to end through the real ``sharedsock``, ``flask runshared`` and
``manage.py runshared`` commands.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import APPS, SHAREDSOCK, http_get
from sharedsock.errors import ConfigError
from sharedsock.runner import resolve

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def run_cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SHAREDSOCK_")}
    full.update(PYTHONPATH=str(APPS), **env)
    return subprocess.run([SHAREDSOCK, *args], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def printed(result: subprocess.CompletedProcess) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    return {name.strip(): value.strip() for name, sep, value in
            (line.partition(" = ") for line in result.stdout.splitlines()) if sep}


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def in_dir(tmp_path, monkeypatch):
    """resolve() in a directory of our own, with no SHAREDSOCK_* from the caller."""
    for name in list(os.environ):
        if name.startswith("SHAREDSOCK_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- precedence ------------------------------------------------------------------------------


def test_file_sits_between_framework_settings_and_the_environment(in_dir, monkeypatch):
    write(in_dir / "sharedsock.conf.py", """
        workers = 3
        threads = 4
        backlog = 100
        keepalive = 7
    """)
    monkeypatch.setenv("SHAREDSOCK_THREADS", "5")
    config = resolve({"backlog": 50}, source="command line",
                     defaults={"workers": 9, "keepalive": 1, "timeout": 11}, defaults_source="settings")
    assert config.config == str(in_dir / "sharedsock.conf.py")
    assert config.workers == 3  # file beats framework settings
    assert config.threads == 5  # environment beats file
    assert config.backlog == 50  # command line beats everything
    assert config.keepalive == 7.0
    assert config.timeout == 11.0  # settings still beat the defaults


def test_explicit_config_replaces_the_default_file_and_empty_reads_none(in_dir, monkeypatch):
    write(in_dir / "sharedsock.conf.py", "workers = 3\n")
    other = write(in_dir / "other.py", "workers = 6\n")
    assert resolve({"config": "other.py"}).workers == 6
    monkeypatch.setenv("SHAREDSOCK_CONFIG", str(other))
    assert resolve({}).workers == 6
    assert resolve({"config": ""}).config is None
    assert resolve({"config": ""}).workers != 3


def test_missing_explicit_file_is_an_error(in_dir):
    with pytest.raises(ConfigError, match=r"--config .*nope\.py: no such file"):
        resolve({"config": "nope.py"}, source="command line")


def test_ignored_names_and_hooks(in_dir):
    write(in_dir / "sharedsock.conf.py", """
        import os
        import json as _json
        from os.path import join
        from multiprocessing import cpu_count

        _helper = 12
        workers = min(cpu_count(), 2)
        bind = ["127.0.0.1:0", "unix:" + join("/tmp", "x.sock")]

        def post_fork(server, worker):
            pass

        pre_request = None
    """)
    from sharedsock.configfile import read_config_file

    found = read_config_file(str(in_dir / "sharedsock.conf.py"))
    assert set(found.values) == {"workers", "bind"}
    assert set(found.hooks) == {"post_fork"}
    assert resolve({}).bind == ("127.0.0.1:0", "unix:/tmp/x.sock")


@pytest.mark.parametrize("text, expected", [
    ("wrokers = 4\n", r"'wrokers' is not an option or a hook; did you mean 'workers'\?"),
    ("def post_forks(server, worker):\n    pass\n", r"did you mean 'post_fork'\?"),
    ("def helper():\n    pass\n", r"'helper' is not an option or a hook; name helpers with a leading underscore"),
    ("config = 'x.py'\n", r"option 'config': the config file cannot name another config file"),
    ("post_fork = 3\n", r"hook post_fork\(server, worker\) must be a function"),
    ("def post_fork(server):\n    pass\n", r"hook post_fork\(server, worker\) cannot take its 2 argument"),
])
def test_mistakes_in_the_file_are_named(in_dir, text, expected):
    write(in_dir / "sharedsock.conf.py", text)
    with pytest.raises(ConfigError, match=expected):
        resolve({})


# -- the command line: one line, exit 2 ------------------------------------------------------


def test_unknown_name_is_one_line_exit_2(tmp_path):
    write(tmp_path / "sharedsock.conf.py", "workers = 2\nmax_request = 5\n")
    line = one_error_line(run_cli(["testapp:app"], tmp_path))
    assert "sharedsock.conf.py: 'max_request' is not an option or a hook; did you mean 'max_requests'?" in line


def test_syntax_error_is_one_line_with_file_and_line(tmp_path):
    write(tmp_path / "conf.py", "workers = 2\n\nbind = [\"127.0.0.1:0\"\ntimeout = 3\n")
    line = one_error_line(run_cli(["-c", "conf.py", "testapp:app"], tmp_path))
    assert f"{tmp_path / 'conf.py'}:3: syntax error" in line


def test_exception_in_the_file_names_its_line(tmp_path):
    write(tmp_path / "conf.py", "workers = 2\ntimeout = undefined_name\n")
    line = one_error_line(run_cli(["-c", "conf.py", "testapp:app"], tmp_path))
    assert f"{tmp_path / 'conf.py'}:2: NameError: name 'undefined_name' is not defined" in line


def test_bad_value_names_file_and_option(tmp_path):
    write(tmp_path / "sharedsock.conf.py", "workers = 'four'\n")
    line = one_error_line(run_cli(["testapp:app"], tmp_path))
    assert f"config file {tmp_path / 'sharedsock.conf.py'} option 'workers': expected an integer" in line


def test_print_config_shows_the_file_values(tmp_path):
    write(tmp_path / "sharedsock.conf.py", "workers = 3\nmax_requests = 10\n")
    values = printed(run_cli(["--print-config", "--max-requests", "20"], tmp_path,
                             SHAREDSOCK_WORKERS="4"))
    assert (values["config"], values["workers"], values["max_requests"]) == (
        str(tmp_path / "sharedsock.conf.py"), "4", "20")


def test_server_runs_with_the_default_file(start_server, tmp_path):
    write(tmp_path / "sharedsock.conf.py", """
        workers = 2
        bind = "127.0.0.1:0"
        server_header = "from-the-file"
    """)
    server = start_server(["testapp:app"], workers=2)
    status, headers, _ = http_get(server)
    assert (status, headers["server"]) == (200, "from-the-file")


# -- --check-config --------------------------------------------------------------------------


def test_check_config_succeeds_without_binding(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        write(tmp_path / "sharedsock.conf.py", f"bind = ['127.0.0.1:{port}']\nworkers = 2\n")
        result = run_cli(["--check-config", "testapp:app"], tmp_path)
    finally:
        taken.close()
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout
    assert "Listening" not in result.stdout + result.stderr


@pytest.mark.parametrize("args, expected", [
    (["broken_app:app"], "error: app failed to load: ZeroDivisionError: broken on purpose"),
    (["no_such_module_here:app"], "no module named 'no_such_module_here'"),
    (["testapp:not_callable"], "not a WSGI callable"),
    (["--bind", "localhost:notaport", "testapp:app"], "localhost:notaport"),
    (["--workers", "0", "testapp:app"], "--workers"),
])
def test_check_config_fails_with_exit_2(tmp_path, args, expected):
    result = run_cli(["--check-config", *args], tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "sharedsock: error:" in result.stderr
    assert re.search(expected, result.stderr), result.stderr


def test_check_config_imports_in_a_fresh_interpreter(tmp_path):
    """An app that exits the interpreter while importing is reported, not obeyed."""
    write(tmp_path / "exits_app.py", "import sys\nsys.exit(3)\n")
    result = run_cli(["--check-config", "exits_app:app"], tmp_path)
    assert result.returncode == 2, result.stderr
    assert "the app called sys.exit(3) while loading" in result.stderr


def test_check_config_reports_a_broken_hook_file(tmp_path):
    write(tmp_path / "sharedsock.conf.py", "def on_starting(server, extra):\n    pass\n")
    line = one_error_line(run_cli(["--check-config", "testapp:app"], tmp_path))
    assert "hook on_starting(server) cannot take its 1 argument" in line


# -- the framework front ends take --config too ----------------------------------------------


def _front_end_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SHAREDSOCK_", "FLASK_", "DJANGO_", "EXAMPLE_SITE_", "NOTES_"))}
    env.update(extra)
    return env


def test_flask_runshared_reads_config_over_app_config(tmp_path):
    # app.config["SHAREDSOCK"] of the example sets server_header "notesapp" and max_requests 10000.
    conf = write(tmp_path / "conf.py", "server_header = 'from-file'\nworkers = 3\n")
    flask = str(Path(sys.executable).with_name("flask"))
    result = subprocess.run([flask, "--app", "notesapp", "runshared", "--print-config", "--config", str(conf)],
                            cwd=ROOT / "example_projects" / "flask_app", capture_output=True, text=True,
                            timeout=60, env=_front_end_env(NOTES_DATA_DIR=str(tmp_path / "data")))
    values = printed(result)
    assert (values["server_header"], values["workers"], values["max_requests"]) == ("from-file", "3", "10000")
    assert values["config"] == str(conf)


def test_django_runshared_reads_config_over_settings(tmp_path):
    # settings.SHAREDSOCK of the example site asks for 2 workers.
    conf = write(tmp_path / "conf.py", "workers = 5\n")
    site = ROOT / "example_projects" / "django_site"
    result = subprocess.run([sys.executable, str(site / "manage.py"), "runshared", "--print-config",
                             "-c", str(conf)], cwd=site, capture_output=True, text=True, timeout=60,
                            env=_front_end_env(EXAMPLE_SITE_DB=str(tmp_path / "db.sqlite3")))
    values = printed(result)
    assert (values["workers"], values["config"]) == ("5", str(conf))
    env_wins = subprocess.run([sys.executable, str(site / "manage.py"), "runshared", "--print-config",
                               "-c", str(conf)], cwd=site, capture_output=True, text=True, timeout=60,
                              env=_front_end_env(EXAMPLE_SITE_DB=str(tmp_path / "db.sqlite3"),
                                                 SHAREDSOCK_WORKERS="7"))
    assert printed(env_wins)["workers"] == "7"


def test_serve_takes_config(tmp_path):
    write(tmp_path / "conf.py", "workers = 'x'\n")
    code = textwrap.dedent(f"""
        import sharedsock
        from sharedsock.errors import ConfigError
        try:
            sharedsock.serve("testapp:app", config={str(tmp_path / 'conf.py')!r})
        except ConfigError as exc:
            print(json.dumps(str(exc)))
    """)
    result = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True,
                            timeout=60, env=_front_end_env(PYTHONPATH=str(APPS)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "option 'workers': expected an integer" in json.loads(result.stdout)
