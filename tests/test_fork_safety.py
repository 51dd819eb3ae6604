"""Before the first fork of a preloaded app, the master says what the workers cannot use."""

from __future__ import annotations

import socket
import textwrap

import pytest

from conftest import http_get

UNSAFE_APP = """
    import os, socket, sqlite3, threading, time
    DB = sqlite3.connect({db!r})
    PEER = socket.create_connection(("127.0.0.1", {port}))
    threading.Thread(target=time.sleep, args=(3600,), name="poller", daemon=True).start()
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
"""


@pytest.fixture
def unsafe_app(tmp_path):
    peer = socket.socket()
    peer.bind(("127.0.0.1", 0))
    peer.listen()
    port = peer.getsockname()[1]
    (tmp_path / "unsafe_app.py").write_text(textwrap.dedent(UNSAFE_APP.format(
        db=str(tmp_path / "app.sqlite3"), port=port)))
    yield port
    peer.close()


def test_preloaded_connections_and_threads_are_warned_about(start_server, tmp_path, unsafe_app):
    server = start_server(["--bind", "127.0.0.1:0", "--preload", "unsafe_app:app"], cwd=tmp_path)
    log = server.log()
    assert f"opened network connections, which every forked worker would share (a connection " \
           f"to 127.0.0.1:{unsafe_app}): open it in a post_fork hook" in log
    assert f"opened SQLite connections, which every forked worker would share (the SQLite " \
           f"database {tmp_path / 'app.sqlite3'})" in log
    assert "started threads, which do not survive fork into workers ('poller' running " \
           "time.sleep)" in log
    assert http_get(server, "/")[0] == 200
    assert server.stop() == 0


def test_strict_fork_safety_refuses_to_start(start_server, tmp_path, unsafe_app):
    server = start_server(["--bind", "127.0.0.1:0", "--preload", "--strict-fork-safety",
                           "unsafe_app:app"], cwd=tmp_path, wait=False)
    assert server.wait_exit() == 2
    lines = [line for line in server.log().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sharedsock: error: --strict-fork-safety: "), lines
    assert "Booted worker" not in server.log()


def test_workers_that_load_the_app_themselves_are_not_warned_about(start_server, tmp_path,
                                                                   unsafe_app):
    server = start_server(["--bind", "127.0.0.1:0", "--strict-fork-safety", "unsafe_app:app"],
                          cwd=tmp_path)
    assert "fork safety" not in server.log()
    assert server.stop() == 0
