"""systemd: readiness and reload notifications, the watchdog, socket activation, the unit files.

The test plays systemd's part: it owns the notify datagram socket and, through
``systemd-socket-activate`` where it exists, hands the server its listening socket.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import APPS, DEADLINE, SHAREDSOCK, Server, http_get, wait_for

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "systemd"


class NotifySocket:
    """The datagram socket systemd would own; collects every message the server sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def _drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            self.messages.append(dict(line.split("=", 1) for line in data.decode().split("\n")))

    def wait(self, key: str, value: str | None = None, after: int = 0) -> int:
        """Index of the first message from ``after`` on that has ``key`` (= ``value``)."""
        def found():
            self._drain()
            for i, message in enumerate(self.messages[after:], after):
                if key in message and (value is None or message[key] == value):
                    return i + 1  # truthy even for the first message
            return None
        return wait_for(found, message=f"{key}={value} from the server") - 1


@pytest.fixture
def notify(tmp_path):
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.sock.close()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_ready_reloading_and_stopping_are_reported(start_server, notify, method):
    server = start_server(["--bind", "127.0.0.1:0", "--workers", "2", "--start-method", method,
                           "testapp:app"], workers=2, env={"NOTIFY_SOCKET": str(notify.path)})
    ready = notify.wait("READY", "1")
    assert notify.messages[ready]["STATUS"] == "2 of 2 workers ready, generation 1"
    server.send(signal.SIGHUP)
    reloading = notify.wait("RELOADING", "1", after=ready + 1)
    usec = int(notify.messages[reloading]["MONOTONIC_USEC"])
    assert abs(usec / 1e6 - time.clock_gettime(time.CLOCK_MONOTONIC)) < DEADLINE
    again = notify.wait("READY", "1", after=reloading + 1)
    assert notify.messages[again]["STATUS"].endswith("generation 2")
    server.send(signal.SIGTERM)
    notify.wait("STOPPING", "1", after=again + 1)
    assert server.wait_exit() == 0


def test_watchdog_is_pinged_when_systemd_asks(start_server, notify):
    start_server(["--bind", "127.0.0.1:0", "testapp:app"],
                 env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"})
    first = notify.wait("WATCHDOG", "1")
    notify.wait("WATCHDOG", "1", after=first + 1)


def test_watchdog_meant_for_another_process_is_not_pinged(start_server, notify):
    server = start_server(["--bind", "127.0.0.1:0", "testapp:app"],
                          env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000",
                               "WATCHDOG_PID": "1"})
    notify.wait("READY", "1")
    server.send(signal.SIGTERM)
    notify.wait("STOPPING", "1")
    assert not any("WATCHDOG" in m for m in notify.messages)


def test_socket_activation_with_notify(tmp_path, notify):
    """What the unit pair in deploy/systemd does: systemd binds, the master is handed fd 3."""
    activate = shutil.which("systemd-socket-activate")
    if activate is None:
        pytest.skip("systemd-socket-activate is not installed: socket activation is covered by "
                    "test_engine_config.py::test_systemd_socket_activation")
    path = tmp_path / "activated.sock"
    env = dict(os.environ, PYTHONPATH=str(APPS), NOTIFY_SOCKET=str(notify.path))
    # It passes on only the variables it is told to, as a unit's Environment= would.
    passed = [arg for name in ("PYTHONPATH", "NOTIFY_SOCKET", "PATH") for arg in ("-E", name)]
    server = Server(["-l", str(path), *passed, SHAREDSOCK, "--workers", "2", "testapp:app"],
                    tmp_path, env=env, command=[activate])
    try:
        # Like systemd, the tool starts the service when the first client connects; that
        # client waits in the socket's queue, which nobody closed, until a worker takes it.
        wait_for(path.exists, message="the activation socket")
        server.url = f"unix:{path}"
        first = server.connect()
        first.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        notify.wait("READY", "1")
        assert first.recv(100).startswith(b"HTTP/1.1 200")
        first.close()
        assert http_get(server, "/")[0] == 200
        assert f"Listening at: unix:{path}" in server.log()
        assert server.stop() == 0
    finally:
        server.kill()


def test_unit_files_are_valid_for_systemd(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit files cannot be verified here")
    for name in ("sharedsock.socket", "sharedsock.service"):
        text = (DEPLOY / name).read_text()
        text = text.replace("/srv/app/venv/bin/sharedsock", SHAREDSOCK)
        text = text.replace("/srv/app", str(tmp_path))
        (tmp_path / name).write_text(text)
    service = (DEPLOY / "sharedsock.service").read_text()
    assert "Type=notify" in service and "ExecReload=/bin/kill -HUP $MAINPID" in service
    result = subprocess.run([analyze, "verify", "--man=no", str(tmp_path / "sharedsock.socket"),
                             str(tmp_path / "sharedsock.service")], capture_output=True, text=True,
                            timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "sharedsock" in line and "User=" not in line]
    assert result.returncode == 0 or not problems, result.stdout + result.stderr
