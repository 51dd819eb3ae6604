"""SIGUSR2: a new master takes the listening sockets over; nothing is refused or lost."""

from __future__ import annotations

import os
import re
import signal
import socket

import pytest
from test_drain_under_load import Load
from test_health_metrics import get, status_url

from conftest import DEADLINE, BackgroundLoop, http_get, wait_for

_MASTER = re.compile(r"sharedsock \S+, master pid (\d+)")


def masters(server) -> list[int]:
    return [int(m.group(1)) for m in _MASTER.finditer(server.log())]


def gone(pid: int) -> bool:
    """Exited (a zombie left for init to reap counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def upgrade(server, count: int) -> int:
    """SIGUSR2 to the serving master; returns the new master's pid once the old one left."""
    old = masters(server)[-1]
    os.kill(old, signal.SIGUSR2)
    wait_for(lambda: len(masters(server)) > count, message="a new master to start")
    new = masters(server)[-1]
    server.wait_log(rf"upgrade: master {new} is serving")
    wait_for(lambda: gone(old), timeout=DEADLINE * 2, message=f"old master {old} to exit")
    return new


def stop_master(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: gone(pid), timeout=DEADLINE * 2, message=f"master {pid} to stop")


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_five_upgrades_under_load_lose_nothing_and_refuse_nothing(start_server, method, tmp_path):
    pidfile = tmp_path / "master.pid"
    server = start_server(["--bind", "127.0.0.1:0", "--start-method", method, "--workers", "2",
                           "--keepalive", "30", "--pid", str(pidfile), "testapp:app"], workers=2)
    with Load(server) as load:
        load.wait_for_requests(100)
        master = masters(server)[-1]
        for n in range(1, 6):
            master = upgrade(server, n)
            assert int(pidfile.read_text()) == master
            load.wait_for_requests(100)
        load.stop()
    assert load.failures == [], f"{len(load.failures)} failed of {load.ok}: {load.failures[:5]}"
    assert load.refused == 0
    assert server.proc.wait(DEADLINE) == 0  # the first master handed over and left cleanly
    status, _, body = http_get(server, "/")
    assert status == 200
    stop_master(master)
    assert not pidfile.exists()


def test_upgrade_serves_the_new_code(start_server, tmp_path):
    module = tmp_path / "versioned.py"
    module.write_text("def app(environ, start_response):\n"
                      "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                      "    return [b'version one']\n")
    server = start_server(["--bind", "127.0.0.1:0", "--workers", "2", "versioned:app"],
                          workers=2, cwd=tmp_path, env={"PYTHONDONTWRITEBYTECODE": "1"})
    assert http_get(server, "/")[2] == b"version one"
    module.write_text(module.read_text().replace("version one", "version two"))
    master = upgrade(server, 1)
    assert http_get(server, "/")[2] == b"version two"
    stop_master(master)


def test_a_new_master_that_cannot_boot_leaves_the_old_one_serving(start_server, tmp_path):
    module = tmp_path / "breaks.py"
    module.write_text("def app(environ, start_response):\n"
                      "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                      "    return [b'still here']\n")
    pidfile = tmp_path / "master.pid"
    server = start_server(["--bind", "127.0.0.1:0", "--workers", "1", "--pid", str(pidfile),
                           "breaks:app"],
                          cwd=tmp_path, env={"PYTHONDONTWRITEBYTECODE": "1"})
    module.write_text("raise RuntimeError('broken on purpose')\n")
    server.send(signal.SIGUSR2)
    server.wait_log("upgrade failed: the new master exited with code 2; this master keeps serving")
    assert http_get(server, "/")[2] == b"still here"
    assert int(pidfile.read_text()) == server.proc.pid
    assert server.stop() == 0


def test_sigusr2_twice_or_during_a_reload_is_refused(start_server, tmp_path):
    hold = tmp_path / "hold"  # while it exists, a worker that imports the app waits
    module = tmp_path / "held.py"
    module.write_text(f"import os, time\n"
                      f"while os.path.exists({str(hold)!r}):\n"
                      f"    time.sleep(0.02)\n"
                      f"def app(environ, start_response):\n"
                      f"    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                      f"    return [b'ok']\n")
    server = start_server(["--bind", "127.0.0.1:0", "--workers", "1", "held:app"], cwd=tmp_path,
                          env={"PYTHONDONTWRITEBYTECODE": "1"})
    hold.touch()
    server.send(signal.SIGUSR2)
    server.wait_log("SIGUSR2: upgrading")
    server.send(signal.SIGUSR2)  # the new master's worker is held in its import
    server.wait_log("SIGUSR2: refused, the upgrade to master")
    server.send(signal.SIGHUP)
    server.wait_log("reloading, starting worker generation 2")
    hold.unlink()
    wait_for(lambda: len(masters(server)) == 2, message="the new master")
    master = masters(server)[-1]
    server.wait_log(rf"upgrade: master {master} is serving")
    wait_for(lambda: gone(server.proc.pid), timeout=DEADLINE * 2, message="old master to exit")
    hold.touch()
    os.kill(master, signal.SIGHUP)
    wait_for(lambda: "reloading, starting worker generation 2" in server.log().split(
        f"[{master}]", 1)[-1], message="the new master to reload")
    os.kill(master, signal.SIGUSR2)
    server.wait_log("SIGUSR2: refused while workers are being started or replaced")
    hold.unlink()
    assert http_get(server, "/")[2] == b"ok"
    stop_master(master)


class ReadinessProbe(BackgroundLoop):
    """A balancer's health check: /readyz on a new connection, over and over, every answer kept."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.answers: list[object] = []

    def step(self) -> None:
        try:
            status, _ = get(self.url, "/readyz")
            self.answers.append(status)
        except OSError as exc:
            self.answers.append(repr(exc))
        self.pause(0.02)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_readiness_stays_200_through_upgrades(start_server, method):
    """The metrics socket is handed over like the listeners: a health check during SIGUSR2 is
    never refused, never 503, and keeps the address even when it was bound to port 0."""
    server = start_server(["--bind", "127.0.0.1:0", "--start-method", method, "--workers", "2",
                           "--metrics-bind", "127.0.0.1:0", "testapp:app"], workers=2)
    url = status_url(server)
    with ReadinessProbe(url) as probe:
        master = masters(server)[-1]
        for n in range(1, 3):
            master = upgrade(server, n)
            answered = len(probe.answers)
            wait_for(lambda seen=answered: len(probe.answers) > seen + 5, message="more readiness answers")
    assert probe.answers and set(probe.answers) == {200}, \
        f"{len(probe.answers)} checks: {[a for a in probe.answers if a != 200][:5]}"
    assert get(url, "/readyz")[0] == 200  # same address, now the second new master's
    stop_master(master)


def test_a_unix_metrics_socket_survives_the_upgrade(start_server, tmp_path):
    """The old master leaves the socket file to the new one: it must not unlink it on exit."""
    path = tmp_path / "metrics.sock"
    server = start_server(["--bind", "127.0.0.1:0", "--workers", "1",
                           "--metrics-bind", f"unix:{path}", "testapp:app"], workers=1)

    def readyz() -> bytes:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(DEADLINE)
            sock.connect(str(path))
            sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return b"".join(iter(lambda: sock.recv(65536), b""))

    assert readyz().startswith(b"HTTP/1.1 200")
    master = upgrade(server, 1)
    assert path.exists()
    assert readyz().startswith(b"HTTP/1.1 200")
    stop_master(master)
