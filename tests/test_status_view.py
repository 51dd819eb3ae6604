"""``sharedsock status`` and ``sharedsock top``: a running server's workers, read from its
--metrics-bind address (``/status.json``), in a pipe and in a real terminal (a pty)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import termios
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_django_runshared import Client, manage, runshared, site_env
from test_health_metrics import get, status_url

from conftest import DEADLINE, SHAREDSOCK, http_get, pid_of, wait_for

_ESCAPE = "\x1b"
_FLASK = str(Path(sys.executable).with_name("flask"))


def view(*args: str, env: dict | None = None, timeout: float = DEADLINE) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "SHAREDSOCK_METRICS_BIND"}
    full_env.update(env or {})
    return subprocess.run([SHAREDSOCK, *args], capture_output=True, text=True, timeout=timeout, env=full_env)


def snapshot(url: str) -> dict:
    status, body = get(url, "/status.json")
    assert status == 200
    return json.loads(body)


def table_rows(text: str) -> dict[int, dict[str, str]]:
    """{pid: {column: value}} of the worker table in ``sharedsock status`` output."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("WORKER"))
    columns = lines[start].split()
    rows = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        row = dict(zip(columns, line.split()))
        rows[int(row["PID"])] = row
    return rows


def _metrics_args(method: str, metrics: str, *extra: str) -> list[str]:
    return ["--bind", "127.0.0.1:0", "--metrics-bind", metrics, "--workers", "2", "--start-method", method,
            *extra, "testapp:app"]


@pytest.mark.parametrize(("method", "over"), [("fork", "tcp"), ("spawn", "unix")])
def test_status_prints_each_worker_and_the_totals(start_server, tmp_path, method, over):
    metrics = "127.0.0.1:0" if over == "tcp" else f"unix:{tmp_path / 'status.sock'}"
    server = start_server(_metrics_args(method, metrics), workers=2)
    url = status_url(server)
    pids = set(server.booted_pids())
    served = [pid_of(http_get(server, "/")[2]) for _ in range(12)]
    address = url if over == "unix" else url.removeprefix("http://")
    wait_for(lambda: snapshot_via(address)["totals"]["requests"] == 12, message="12 requests in the status")
    result = view("status", address)
    assert result.returncode == 0, result.stderr
    assert _ESCAPE not in result.stdout  # not a terminal: a plain table
    rows = table_rows(result.stdout)
    assert set(rows) == pids
    for pid, row in rows.items():
        assert (row["GEN"], row["STATE"]) == ("1", "ready")
        assert int(row["REQUESTS"]) == served.count(pid) == int(row["ACCEPTED"])
        assert row["RSS"].endswith("M") and float(row["RSS"][:-1]) > 1
    shares = [float(row["SHARE"].rstrip("%")) for row in rows.values()]
    assert abs(sum(shares) - 100) < 0.2
    assert "requests 12 " in result.stdout
    assert re.search(rf"listener {re.escape(server.url)}: accept queue 0 of 2048", result.stdout)
    raw = json.loads(view("status", "--json", address).stdout)
    assert {w["pid"] for w in raw["workers"]} == pids and raw["master"]["pid"] == server.proc.pid
    assert server.stop() == 0


def snapshot_via(address: str) -> dict:
    result = view("status", "--json", address)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _load(server, stop: threading.Event) -> None:
    """Keep-alive requests back to back until ``stop``."""
    request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
    while not stop.is_set():
        try:
            with server.connect() as sock:
                for _ in range(50):  # then a new connection, which may go to another worker
                    if stop.is_set():
                        return
                    sock.sendall(request)
                    data = b""
                    while not data.endswith(b"\n") or b"\r\n\r\n" not in data:
                        chunk = sock.recv(65536)
                        if not chunk:
                            raise ConnectionError
                        data += chunk
        except OSError:
            if stop.is_set():
                return


@contextmanager
def kept_busy(server, clients: int = 4):
    """``clients`` threads sending keep-alive requests back to back while the block runs."""
    stop = threading.Event()
    loaders = [threading.Thread(target=_load, args=(server, stop), daemon=True) for _ in range(clients)]
    for loader in loaders:
        loader.start()
    try:
        yield
    finally:
        stop.set()
        for loader in loaders:
            loader.join(DEADLINE)


def test_rates_history_and_totals_across_a_reload(start_server):
    server = start_server(_metrics_args("fork", "127.0.0.1:0"), workers=2)
    url = status_url(server)
    old = set(server.booted_pids())
    with kept_busy(server):
        busy = wait_for(lambda: (s := snapshot(url))["totals"]["requests_per_second"] > 0 and
                        all(w["requests"] for w in s["workers"]) and s,
                        message="a request rate above 0, and every worker serving")
        assert all(w["heartbeat_age_seconds"] is not None and w["age_seconds"] >= 0 for w in busy["workers"])
        before = busy["totals"]["requests"]
        server.send(signal.SIGHUP)
        server.wait_log(r"Booted worker \d+ \(generation 2\)", count=2)
        server.wait_log(r"worker \d+ \(generation 1\) exited", count=2)
        after = wait_for(lambda: (s := snapshot(url))["workers"] and
                         {w["generation"] for w in s["workers"]} == {2} and
                         s["totals"]["requests_per_second"] > 0 and s, message="generation 2 serving")
    assert after["master"]["generation"] == 2 and after["master"]["reloads"] == 1
    assert after["totals"]["requests"] > before  # the old generation's requests stay counted
    series = {s["pid"]: s for s in after["history"]["series"]}
    assert old <= set(series)  # exited workers' rates stay on the chart for the window
    assert all(any(rate > 0 for _, rate in series[pid]["points"]) for pid in old)
    assert all(-after["history"]["window_seconds"] <= t <= 0 for s in series.values() for t, _ in s["points"])
    assert server.stop() == 0


def test_top_without_a_terminal_prints_a_plain_table_per_refresh(start_server):
    server = start_server(_metrics_args("fork", "127.0.0.1:0"), workers=2)
    result = view("top", status_url(server), "-n", "3", "-d", "0.2")
    assert result.returncode == 0, result.stderr
    assert _ESCAPE not in result.stdout
    assert result.stdout.count("WORKER") == 3
    assert set(table_rows(result.stdout)) == set(server.booted_pids())


def test_top_in_a_terminal_redraws_and_quits_on_q(start_server):
    server = start_server(_metrics_args("fork", "127.0.0.1:0"), workers=2)
    pids = server.booted_pids()
    leader, follower = pty.openpty()
    before = termios.tcgetattr(follower)
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "SHAREDSOCK_METRICS_BIND")}
    env["TERM"] = "xterm"
    proc = subprocess.Popen([SHAREDSOCK, "top", status_url(server)], stdin=follower, stdout=follower,
                            stderr=follower, env=env, start_new_session=True)
    screen = b""

    def read_some() -> None:
        nonlocal screen
        if select.select([leader], [], [], 0.2)[0]:
            screen += os.read(leader, 65536)

    try:
        wait_for(lambda: read_some() or screen.count(b"\x1b[H\x1b[2J") >= 3,
                 message="three redraws of the screen")
        last = screen.rsplit(b"\x1b[H\x1b[2J", 1)[1].decode()
        assert all(str(pid) in last for pid in pids) and "\x1b[1mWORKER" in last
        os.write(leader, b"q")
        assert proc.wait(DEADLINE) == 0
        wait_for(lambda: read_some() or b"\x1b[?25h" in screen, message="the cursor shown again")
        assert termios.tcgetattr(follower) == before  # cbreak mode undone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
        os.close(follower)


def test_a_wrong_or_missing_address_is_one_line(start_server):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    for args in (("status", closed), ("top", closed)):
        result = view(*args)
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.count("\n") == 1 and f"no status from {closed}" in result.stderr, result.stderr
    server = start_server(_metrics_args("fork", "127.0.0.1:0"), workers=2)
    result = view("status", server.url)  # the app's address, not the metrics one
    assert result.returncode == 1 and "--metrics-bind address" in result.stderr
    for args in (("status",), ("status", "127.0.0.1:0"), ("status", "unix:"), ("top", "host:port")):
        result = view(*args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, (args, result.stderr)
    metrics = status_url(server)
    result = view("status", env={"SHAREDSOCK_METRICS_BIND": metrics.removeprefix("http://")})
    assert result.returncode == 0 and set(table_rows(result.stdout)) == set(server.booted_pids())


def test_status_reads_a_flask_runshared_server(start_server, tmp_path):
    (tmp_path / "tinyflask.py").write_text(
        "import os\nfrom flask import Flask\napp = Flask(__name__)\n\n"
        "@app.route('/')\ndef index():\n    return str(os.getpid())\n")
    env = {"PYTHONDONTWRITEBYTECODE": "1"}
    server = start_server(["--app", "tinyflask", "runshared", "--bind", "127.0.0.1:0", "--metrics-bind",
                           "127.0.0.1:0", "--workers", "2"], workers=2, command=[_FLASK], env=env,
                          cwd=tmp_path)
    url = status_url(server)
    for _ in range(4):
        assert http_get(server, "/")[0] == 200
    wait_for(lambda: snapshot(url)["totals"]["requests"] == 4, message="4 requests counted")
    result = view("status", url)
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert set(rows) == set(server.booted_pids())
    assert sum(int(r["REQUESTS"]) for r in rows.values()) == 4
    assert server.stop() == 0


def test_status_reads_a_django_runshared_server(start_server, tmp_path):
    db = tmp_path / "db.sqlite3"
    assert manage("migrate", "--noinput", env=site_env(db)).returncode == 0
    server = runshared(start_server, ["127.0.0.1:0", "--workers", "2", "--metrics-bind", "127.0.0.1:0",
                                      "--noreload"], env=site_env(db))
    url = status_url(server)
    client = Client(server)
    for _ in range(3):
        assert client.request("GET", "/").status == 200
    wait_for(lambda: snapshot(url)["totals"]["requests"] == 3, message="3 requests counted")
    result = view("top", url, "-n", "1")
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert set(rows) == set(server.booted_pids())
    assert sum(int(r["REQUESTS"]) for r in rows.values()) == 3
    assert server.stop() == 0


def test_an_app_module_named_status_is_still_served(start_server, tmp_path):
    """``sharedsock status`` is the view; an app module called status is given as status:app."""
    (tmp_path / "status.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'status app']\n")
    server = start_server(["--bind", "127.0.0.1:0", "status:app"], cwd=tmp_path)
    assert http_get(server, "/")[2] == b"status app"
    assert server.stop() == 0
