"""The structure a newcomer relies on: who imports what, how workers start, what exit codes mean."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from conftest import APPS, SHAREDSOCK, http_get
from sharedsock.errors import AppLoadError, ConfigError, SharedsockError, exit_code_for


def test_the_master_does_not_import_the_request_path():
    code = ("import sys, sharedsock.master, sharedsock.runner, sharedsock.cli; "
            "print([m for m in sys.modules if m.startswith('sharedsock.')])")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = set(eval(loaded.stdout))
    assert not modules & {"sharedsock.worker", "sharedsock.connection", "sharedsock.wsgi",
                          "sharedsock.http.parser", "sharedsock.http.response", "sharedsock.proxy"}
    assert "sharedsock.channel" in modules


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_run_with_the_interpreter_options_the_server_was_started_with(start_server, method):
    server = start_server(["--bind", "127.0.0.1:0", "--start-method", method, "flags_app:app"],
                          command=[sys.executable, "-O", "-X", "sharedsock_probe=1",
                                   "-W", "ignore::FutureWarning", "-m", "sharedsock"])
    flags = json.loads(http_get(server, "/")[2])
    assert flags["optimize"] == 1
    assert flags["xoptions"].get("sharedsock_probe") == "1"
    assert "ignore::FutureWarning" in flags["warnoptions"]
    assert server.stop() == 0


@pytest.mark.parametrize(("error", "code"), [
    (ConfigError("bad option"), 2),
    (AppLoadError("no app"), 2),
    (SharedsockError("internal"), 1),
    (KeyboardInterrupt(), 130),
    (RuntimeError("a bug"), 1),
])
def test_one_mapping_from_error_to_exit_code(error, code):
    assert exit_code_for(error) == code


def test_a_taken_port_is_one_line_and_exit_2():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([SHAREDSOCK, "--bind", f"127.0.0.1:{port}", "testapp:app"],
                                capture_output=True, text=True, timeout=60, cwd=APPS)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"cannot bind 127.0.0.1:{port}" in result.stderr
