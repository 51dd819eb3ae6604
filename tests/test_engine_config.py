"""Entry points, binds and bad configuration: what a user types and what they get back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import APPS, SHAREDSOCK, http_get, wait_for
from sharedsock.errors import ConfigError


def run_cli(args: list[str], tmp_path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(APPS))
    return subprocess.run([SHAREDSOCK, *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["--no-such-flag", "testapp:app"], "unknown option --no-such-flag (see sharedsock --help)"),
    (["--workers", "-1", "testapp:app"], "--workers: must be at least 1"),
    (["--workers", "many", "testapp:app"], "--workers: expected an integer"),
    (["--bind", "127.0.0.1:99999", "testapp:app"], "is not a port number"),
    (["--bind", "no-such-host.invalid:80", "testapp:app"], "unknown host"),
    (["--bind", "unix:", "testapp:app"], "a unix socket needs a path"),
    (["--start-method", "thread", "testapp:app"], "expected one of fork, spawn"),
    (["--timeout", "soon", "testapp:app"], "--timeout: expected a number"),
    (["--error-log", "/nonexistent-dir/x.log", "testapp:app"], "--error-log /nonexistent-dir/x.log"),
    (["--access-log-format", "%(nope)s", "--access-log", "-", "testapp:app"], "unknown atom 'nope'"),
    (["--preload", "--start-method", "spawn", "testapp:app"], "--preload needs --start-method fork"),
    (["--forwarded-allow-ips", "not-an-ip", "testapp:app"], "is not an IP address"),
    (["testapp:app("], "invalid app target"),
    ([], "no app given"),
])
def test_bad_configuration_is_one_line_exit_2(tmp_path, args, message):
    result = run_cli(["--bind", "127.0.0.1:0", *args] if "--bind" not in args else args, tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [
    ["--wrokers", "2", "testapp:app"],  # argparse took "2" for the app and blamed "testapp:app"
    ["--wrokers=2", "testapp:app"],
    ["testapp:app", "--max-requets", "5"],
])
def test_misspelt_flag_is_named_with_its_fix(tmp_path, args):
    result = run_cli(["--bind", "127.0.0.1:0", *args], tmp_path)
    assert result.returncode == 2, result.stderr
    wanted = "--workers" if "wrokers" in args[0] else "--max-requests"
    flag = args[0].partition("=")[0] if "wrokers" in args[0] else "--max-requets"
    assert result.stderr == f"sharedsock: error: unknown option {flag} (did you mean {wanted}?)\n"


def test_unknown_environment_variable_is_a_one_line_warning(start_server, tmp_path):
    server = start_server(["--bind", "127.0.0.1:0", "testapp:app"],
                          env={"SHAREDSOCK_WROKERS": "2", "SHAREDSOCK_NOT_AN_OPTION": "1"})
    assert http_get(server, "/")[0] == 200
    warnings = [line for line in server.log().splitlines() if "warning:" in line]
    assert warnings == [
        ("sharedsock: warning: SHAREDSOCK_NOT_AN_OPTION is not an option and is ignored; "
         "see --help for the options"),
        ("sharedsock: warning: SHAREDSOCK_WROKERS is not an option and is ignored; "
         "did you mean SHAREDSOCK_WORKERS?"),
    ]
    assert server.stop() == 0


def test_the_pure_python_switch_is_no_unknown_option_and_the_log_says_which_path_runs(start_server):
    server = start_server(["--bind", "127.0.0.1:0", "testapp:app"], env={"SHAREDSOCK_PURE_PYTHON": "1"})
    assert http_get(server, "/")[0] == 200
    assert "warning:" not in server.log()
    server.wait_log(r"thread\(s\) each; pure Python \(SHAREDSOCK_PURE_PYTHON is set\)")
    assert server.stop() == 0


@pytest.mark.parametrize("separator", [",", ", ", " "])
def test_environment_bind_list_binds_every_address(start_server, separator):
    server = start_server(["testapp:app"],
                          env={"SHAREDSOCK_BIND": separator.join(["127.0.0.1:0", "127.0.0.1:0"])})
    urls = [m.group(1) for m in server.wait_log(r"Listening at: (\S+)", count=2)]
    assert len(set(urls)) == 2, server.log()
    for url in urls:
        server.url = url
        status, _, body = http_get(server, "/")
        assert status == 200 and body.startswith(b"pid=")
    assert server.stop() == 0


def test_each_bind_flag_is_one_address_kept_whole(tmp_path):
    """The escape hatch for a unix socket path with a comma: one flag, one address."""
    path = tmp_path / "a,b.sock"
    result = subprocess.run([SHAREDSOCK, "--print-config", "--bind", f"unix:{path}",
                             "--bind", "127.0.0.1:0"], capture_output=True, text=True,
                            env=dict(os.environ, SHAREDSOCK_BIND="127.0.0.1:1,127.0.0.1:2"), timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert f"bind                     = unix:{path}, 127.0.0.1:0" in result.stdout


def test_a_module_not_on_the_path_is_reported_before_binding(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    for target, missing in [("nosuchmodule:app", "nosuchmodule"), ("pkg.nope:app", "pkg.nope")]:
        result = run_cli(["--bind", "127.0.0.1:0", target], tmp_path)
        assert result.returncode == 2, result.stderr
        module = target.partition(":")[0]
        assert result.stderr == (
            f"sharedsock: error: cannot import {module!r}: no module named {missing!r} on the Python "
            "path (run from the directory that contains it, or add that directory to PYTHONPATH)\n")
        assert "Listening at" not in result.stdout + result.stderr
        assert "--pythonpath" not in result.stderr  # sharedsock has no such flag


def test_a_package_that_extends_its_path_is_left_to_the_workers(start_server, tmp_path):
    """pkgutil.extend_path finds submodules only when the package runs: no verdict before that."""
    for root in ("one", "two"):
        (tmp_path / root / "nspkg").mkdir(parents=True)
        (tmp_path / root / "nspkg" / "__init__.py").write_text(
            "__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n")
    (tmp_path / "two" / "nspkg" / "site.py").write_text(textwrap.dedent("""
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"extended"]
    """))
    server = start_server(["--bind", "127.0.0.1:0", "nspkg.site:app"], cwd=tmp_path,
                          env={"PYTHONPATH": f"{tmp_path / 'one'}{os.pathsep}{tmp_path / 'two'}"})
    assert http_get(server, "/")[2] == b"extended"
    assert server.stop() == 0


@pytest.mark.parametrize("source, target, where", [
    ("import os\nimport requestz_not_installed\napp = None\n", "dep:app", "dep.py, line 2"),
    ("import importlib\nPLUGIN = importlib.import_module('json.no_such_plugin')\n", "dep:app",
     "dep.py, line 2"),  # innermost frame: <frozen importlib._bootstrap>
    ("import json\ndef config():\n    return json.loads('{bad')\nCONFIG = config()\n", "dep:app",
     "dep.py, line 3"),
    ("def create_app():\n    return None\n", "dep:create_app(1)", None),
])
def test_load_errors_point_at_the_users_code(start_server, tmp_path, source, target, where):
    (tmp_path / "dep.py").write_text(source)
    server = start_server(["--bind", "127.0.0.1:0", target], cwd=tmp_path, wait=False)
    assert server.wait_exit() == 2
    (line,) = [line for line in server.log().splitlines() if "app failed to load" in line]
    assert "<frozen" not in line and "sharedsock" + os.sep not in line and "appspec.py" not in line
    if where is None:
        assert line.endswith("create_app() takes 0 positional arguments but 1 was given"), line
    else:
        assert line.endswith(f"{tmp_path / where})"), line


def test_bind_text_is_split_at_commas_and_spaces_but_list_items_are_kept_whole():
    from sharedsock.config import build_config

    def binds(value):
        return build_config(("serve()", {"bind": value})).bind

    assert binds("127.0.0.1:0,[::1]:0 unix:/tmp/s.sock") == ("127.0.0.1:0", "[::1]:0", "unix:/tmp/s.sock")
    assert binds(["unix:/tmp/a,b.sock", "127.0.0.1:0"]) == ("unix:/tmp/a,b.sock", "127.0.0.1:0")
    with pytest.raises(ConfigError, match="expected an address"):
        binds(" , ")


def test_bad_environment_variable_is_one_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(APPS), SHAREDSOCK_WORKERS="zero")
    result = subprocess.run([SHAREDSOCK, "testapp:app"], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "sharedsock: error: SHAREDSOCK_WORKERS: expected an integer, got 'zero'"


def test_address_in_use_is_one_line(tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        result = run_cli(["--bind", f"127.0.0.1:{port}", "testapp:app"], tmp_path)
    finally:
        holder.close()
    assert result.returncode == 2
    assert result.stderr.strip() == f"sharedsock: error: cannot bind 127.0.0.1:{port}: address already in use"


@pytest.mark.parametrize("target, expected", [
    ("testapp:not_callable", "testapp:not_callable is not a WSGI callable"),
    ("testapp:missing", "module 'testapp' has no attribute 'missing'"),
])
def test_bad_app_attribute_exit_2(start_server, target, expected):
    server = start_server(["--bind", "127.0.0.1:0", target], wait=False)
    assert server.wait_exit() == 2
    assert expected in server.log()
    assert "Traceback" not in server.log()


def test_print_config_shows_resolved_values(tmp_path):
    env = dict(os.environ, SHAREDSOCK_THREADS="3")
    result = subprocess.run([SHAREDSOCK, "--print-config", "--workers", "5"], capture_output=True,
                            text=True, env=env, timeout=60)
    assert result.returncode == 0
    assert "workers                  = 5" in result.stdout
    assert "threads                  = 3" in result.stdout
    assert "bind                     = 127.0.0.1:8000" in result.stdout


def test_python_dash_m_and_factory_target(start_server):
    server = start_server(["--bind", "127.0.0.1:0", "testapp:create_app('howdy', x=1)"],
                          command=[sys.executable, "-m", "sharedsock"])
    status, _, body = http_get(server, "/")
    assert status == 200 and body.startswith(b"howdy pid=")
    assert server.stop() == 0


def test_module_only_target_finds_application(start_server, tmp_path):
    (tmp_path / "onlymod.py").write_text(textwrap.dedent("""
        def application(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"found application"]
    """))
    server = start_server(["--bind", "127.0.0.1:0", "onlymod"], cwd=tmp_path)
    assert http_get(server, "/")[2] == b"found application"
    assert server.stop() == 0


def test_unix_socket_bind_replaces_stale_file(start_server, tmp_path, start_method):
    path = tmp_path / "app.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: a crashed server's leftover
    server = start_server(["--bind", f"unix:{path}", "--umask", "077", "--start-method", start_method,
                           "testapp:app"])
    assert server.url == f"unix:{path}"
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o700)
    status, _, body = http_get(server, "/")
    assert status == 200 and b"pid=" in body
    assert server.stop() == 0
    assert not path.exists()


def test_live_unix_socket_is_an_error(start_server, tmp_path):
    path = tmp_path / "live.sock"
    first = start_server(["--bind", f"unix:{path}", "testapp:app"])
    result = run_cli(["--bind", f"unix:{path}", "testapp:app"], tmp_path)
    assert result.returncode == 2
    assert "another server is listening" in result.stderr
    assert http_get(first, "/")[0] == 200


def _listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def test_inherited_fd_bind(start_server, start_method):
    sock = _listening_socket()
    port = sock.getsockname()[1]
    fd = sock.fileno()
    server = start_server(["--bind", f"fd://{fd}", "--start-method", start_method, "testapp:app"],
                          pass_fds=(fd,))
    sock.close()
    assert server.port == port
    assert http_get(server, "/")[0] == 200
    assert server.stop() == 0


def test_systemd_socket_activation(tmp_path):
    sock = _listening_socket()
    port = sock.getsockname()[1]
    # LISTEN_PID must be the server's own pid, so set it in the child right before exec.
    script = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_FDS'] = '1'; "
              "os.environ['LISTEN_PID'] = str(os.getpid()); "
              f"os.execv({SHAREDSOCK!r}, [{SHAREDSOCK!r}, 'testapp:app'])")
    log = tmp_path / "log"
    env = dict(os.environ, PYTHONPATH=str(APPS))
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", script, str(sock.fileno())], stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                                pass_fds=(sock.fileno(),))
    sock.close()
    try:
        wait_for(lambda: "Booted worker" in log.read_text(), message="systemd-activated server")
        assert f"Listening at: http://127.0.0.1:{port}" in log.read_text()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert c.recv(100).startswith(b"HTTP/1.1 200")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_pid_file_written_and_removed(start_server, tmp_path):
    pidfile = tmp_path / "server.pid"
    server = start_server(["--bind", "127.0.0.1:0", "--pid", str(pidfile), "testapp:app"])
    assert int(pidfile.read_text()) == server.proc.pid
    assert server.stop() == 0
    assert not pidfile.exists()


def test_access_log_combined_and_json(start_server, tmp_path):
    combined = start_server(["--bind", "127.0.0.1:0", "--access-log", "-", "testapp:app"])
    http_get(combined, "/a?q=1", headers={"User-Agent": 'evil"agent', "Referer": "http://r/"})
    combined.wait_log(r'"GET /a\?q=1 HTTP/1.1" 200 \d+ "http://r/" "evil\\"agent"')
    log_path = tmp_path / "access.json"
    js = start_server(["--bind", "127.0.0.1:0", "--access-log", str(log_path),
                       "--access-log-format", "json", "testapp:app"])
    http_get(js, "/j", headers={"User-Agent": "line\u00e9"})
    import json
    wait_for(lambda: log_path.exists() and log_path.read_text().strip(), message="json access line")
    record = json.loads(log_path.read_text().splitlines()[0])
    assert record["path"] == "/j" and record["status"] == 200 and record["method"] == "GET"
    assert record["user_agent"] == "line\\xe9"  # the byte the client sent, not a guess at its text


def test_reload_picks_up_changes_and_survives_broken_file(start_server, tmp_path, start_method):
    module = tmp_path / "reloadme.py"
    module.write_text(textwrap.dedent("""
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"version one"]
    """))
    server = start_server(["--bind", "127.0.0.1:0", "--reload", "--workers", "2",
                           "--start-method", start_method, "reloadme:app"], cwd=tmp_path, workers=2,
                          env={"PYTHONDONTWRITEBYTECODE": "1"})
    assert http_get(server, "/")[2] == b"version one"

    def write(text: str) -> None:
        module.write_text(textwrap.dedent(text))
        stat = module.stat()
        os.utime(module, (stat.st_atime, stat.st_mtime + 2))  # coarse mtime clocks

    write("""
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"version two"]
    """)
    wait_for(lambda: http_get(server, "/")[2] == b"version two", message="reload to version two")
    # Generation 1 serves until all of generation 2 is up: only then is "version two" the
    # answer the old generation keeps giving below.
    server.wait_log(r"worker \d+ \(generation 1\) exited", count=2)
    write("def app(environ, start_response:\n")  # syntax error
    server.wait_log("waiting for a file change|reload failed")
    assert "SyntaxError" in server.log()
    assert http_get(server, "/")[2] == b"version two"  # the old generation keeps serving
    write("""
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"version three"]
    """)
    wait_for(lambda: http_get(server, "/")[2] == b"version three", message="recovery")
    assert server.stop() == 0


def test_reload_sees_an_edit_made_before_the_master_read_the_file_list(start_server, tmp_path):
    """The master may read a worker's list of loaded files late (here: it is stopped). An
    edit made in between must still count as a change from what the worker loaded."""
    marker, go = tmp_path / "importing", tmp_path / "go"
    module = tmp_path / "reloadrace.py"
    module.write_text(textwrap.dedent(f"""
        import os, time
        open({str(marker)!r}, "w").close()
        while not os.path.exists({str(go)!r}):  # held here until the master is stopped
            time.sleep(0.01)

        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"version one"]
    """))
    sock_path = tmp_path / "race.sock"  # known before the banner, which waits for the worker
    server = start_server(["--bind", f"unix:{sock_path}", "--reload", "reloadrace:app"],
                          cwd=tmp_path, wait=False, env={"PYTHONDONTWRITEBYTECODE": "1"})
    server.url = f"unix:{sock_path}"
    wait_for(marker.exists, message="the worker to import the app")
    server.send(signal.SIGSTOP)  # the master, not its worker
    try:
        go.touch()
        # Served means the worker has sent its file list, before it started serving.
        wait_for(lambda: http_get(server, "/")[2] == b"version one", message="version one")
        module.write_text(module.read_text().replace("version one", "version two"))
        stat = module.stat()
        os.utime(module, (stat.st_atime, stat.st_mtime + 2))  # coarse mtime clocks
    finally:
        server.send(signal.SIGCONT)
    wait_for(lambda: http_get(server, "/")[2] == b"version two", message="reload to version two")
    assert server.stop() == 0


def test_reload_waits_for_fix_when_app_never_loaded(start_server, tmp_path):
    module = tmp_path / "starts_broken.py"
    module.write_text("def app(environ, start_response:\n")
    server = start_server(["--bind", "127.0.0.1:0", "--reload", "starts_broken:app"], cwd=tmp_path,
                          wait=False, env={"PYTHONDONTWRITEBYTECODE": "1"})
    server.wait_log("waiting for a file change")
    assert server.proc.poll() is None
    module.write_text(textwrap.dedent("""
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"fixed"]
    """))
    st = module.stat()
    os.utime(module, (st.st_atime, st.st_mtime + 2))
    server.wait_ready()
    assert http_get(server, "/")[2] == b"fixed"
    assert server.stop() == 0


SWITCH_APP = """
import sys

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [repr(sys.getswitchinterval()).encode()]
"""


@pytest.mark.parametrize("args, expected", [
    (["--threads", "4"], 0.0005),  # the default, for a pool
    (["--threads", "4", "--switch-interval", "0.002"], 0.002),
    (["--threads", "1", "--switch-interval", "0.002"], 0.005),  # no pool: Python's own is kept
])
def test_a_threaded_worker_sets_the_switch_interval(start_server, tmp_path, start_method, args, expected):
    (tmp_path / "switchapp.py").write_text(SWITCH_APP)
    server = start_server(["--bind", "127.0.0.1:0", "--start-method", start_method, *args,
                           "switchapp:app"], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    status, _, body = http_get(server, "/")
    assert status == 200
    assert float(body) == pytest.approx(expected)
    assert server.stop() == 0


@pytest.mark.parametrize("value", ["0", "2", "1e300"])  # Python would take 1e300 as 0 without a word
def test_a_switch_interval_out_of_range_is_refused(tmp_path, value):
    result = run_cli(["--bind", "127.0.0.1:0", "--threads", "4", "--switch-interval", value, "testapp:app"],
                     tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "--switch-interval: must be from 1e-06 to 1" in result.stderr


@pytest.mark.parametrize("preload", [False, True])
def test_an_app_that_sets_its_own_switch_interval_keeps_it(start_server, tmp_path, preload):
    """With --preload the app's import runs in the master, before any worker exists."""
    (tmp_path / "ownswitch.py").write_text("import sys\nsys.setswitchinterval(0.003)\n" + SWITCH_APP)
    args = ["--bind", "127.0.0.1:0", "--threads", "4", "--switch-interval", "0.002"]
    server = start_server([*args, *(["--preload"] if preload else []), "ownswitch:app"], cwd=tmp_path,
                          env={"PYTHONPATH": str(tmp_path)})
    assert float(http_get(server, "/")[2]) == pytest.approx(0.003)
    assert server.stop() == 0


def test_the_switch_interval_can_come_from_the_environment(start_server, tmp_path):
    (tmp_path / "switchapp.py").write_text(SWITCH_APP)
    server = start_server(["--bind", "127.0.0.1:0", "--threads", "2", "switchapp:app"], cwd=tmp_path,
                          env={"PYTHONPATH": str(tmp_path), "SHAREDSOCK_SWITCH_INTERVAL": "0.0025"})
    assert float(http_get(server, "/")[2]) == pytest.approx(0.0025)
    assert server.stop() == 0
