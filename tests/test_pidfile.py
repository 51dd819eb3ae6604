"""--pid: removed at exit, a stale file replaced, a live one a refusal."""

from __future__ import annotations

import os
import subprocess

from conftest import APPS, SHAREDSOCK


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_stale_pid_file_is_replaced(start_server, tmp_path):
    pidfile = tmp_path / "master.pid"
    pidfile.write_text(f"{_dead_pid()}\n")
    server = start_server(["--bind", "127.0.0.1:0", "--pid", str(pidfile), "testapp:app"])
    assert int(pidfile.read_text()) == server.proc.pid
    assert server.stop() == 0
    assert not pidfile.exists()


def test_a_live_pid_file_refuses_to_start_with_exit_2(start_server, tmp_path):
    pidfile = tmp_path / "master.pid"
    first = start_server(["--bind", "127.0.0.1:0", "--pid", str(pidfile), "testapp:app"])
    result = subprocess.run([SHAREDSOCK, "--bind", "127.0.0.1:0", "--pid", str(pidfile),
                             "testapp:app"], capture_output=True, text=True, timeout=60, cwd=APPS,
                            env=dict(os.environ, PYTHONPATH=str(APPS)))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"sharedsock: error: --pid {pidfile}: sharedsock already runs "
                                     f"as pid {first.proc.pid} (stop it, or remove the file if "
                                     "that process is not sharedsock)")
    assert int(pidfile.read_text()) == first.proc.pid  # the running server's file is untouched
    assert first.stop() == 0
