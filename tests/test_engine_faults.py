"""Faults found by pushing the engine: stray signals, crash loops, heartbeats that missed progress."""

from __future__ import annotations

import os
import re
import signal
import threading

from conftest import DEADLINE, ResponseReader, http_get, pid_of, wait_for


def _args(method: str, *extra: str, app: str = "testapp:app") -> list[str]:
    return ["--bind", "127.0.0.1:0", "--start-method", method, *extra, app]


STRAY = ("SIGWINCH", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGPWR", "SIGPIPE")


def test_stray_signals_neither_kill_the_master_nor_its_workers(start_server, start_method, tmp_path):
    pidfile = tmp_path / "master.pid"
    server = start_server(_args(start_method, "--workers", "1", "--pid", str(pidfile)))
    worker = pid_of(http_get(server, "/")[2])
    for name in STRAY:
        server.send(getattr(signal, name))
        os.kill(worker, getattr(signal, name))
    os.kill(worker, signal.SIGUSR2)  # the master's upgrade signal: a worker ignores it
    server.wait_log("SIGPWR: ignored")
    assert server.proc.poll() is None
    assert "SIGALRM: ignored" in server.log()
    status, _, body = http_get(server, "/")
    assert status == 200 and pid_of(body) == worker, "the worker was replaced"
    assert "died" not in server.log()
    assert server.stop() == 0
    assert not pidfile.exists()


def test_sigusr1_says_the_logs_were_reopened(start_server, start_method):
    server = start_server(_args(start_method))
    server.send(signal.SIGUSR1)
    server.wait_log("SIGUSR1: log files reopened")
    assert server.stop() == 0


def test_workers_that_die_right_after_booting_are_restarted_with_a_growing_delay(
        start_server, start_method, tmp_path):
    flag = tmp_path / "crash"
    flag.write_text("")
    server = start_server(_args(start_method, "--workers", "1", "--log-level", "debug",
                                app="crashloop:app"), env={"CRASHLOOP_FLAG": str(flag)})
    matches = server.wait_log(r"next start in (\d+\.\d)s", count=5, timeout=DEADLINE * 2)
    delays = [float(m.group(1)) for m in matches]
    assert delays[:5] == [0.1, 0.2, 0.4, 0.8, 1.6]
    log = server.log()
    assert log.count("keep dying soon after they boot") == 1  # once per burst, not per boot
    assert len(re.findall(r"died: exit code 0; replacing it", log)) == 1
    flag.unlink()  # the next worker stays up: the burst is over
    server.wait_log(r"workers stay up again after \d+ quick exits", timeout=DEADLINE * 2)
    assert http_get(server, "/")[0] == 200
    assert server.stop() == 0


def test_inline_worker_beats_while_it_serves_a_batch_of_slow_requests(start_server, start_method):
    """Five 1-second requests accepted in one batch take 5 s: longer than --timeout 3, but
    the worker makes progress all along and must not be killed as hung."""
    server = start_server(_args(start_method, "--workers", "1", "--threads", "1", "--timeout", "3"))
    socks = []
    for _ in range(5):
        sock = server.connect()
        sock.sendall(b"GET /slow?1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        socks.append(sock)
    statuses = [ResponseReader(sock).next()[0] for sock in socks]
    for sock in socks:
        sock.close()
    assert statuses == [200] * 5, server.log()
    assert "timed out" not in server.log()
    assert server.stop() == 0


def test_sigterm_stops_an_inline_worker_taking_new_clients(start_server, start_method):
    """A SIGTERM that came while an inline worker served its accept batch used to let it go
    on accepting (from its own copy of the listener) until --graceful-timeout. Now it serves
    what had reached it, takes no new client, and leaves: every client gets a 200 or a
    refused connect, none a reset, and the stop takes seconds, not --graceful-timeout."""
    server = start_server(_args(start_method, "--workers", "1", "--threads", "1",
                                "--graceful-timeout", str(DEADLINE * 4)))
    results: list[str] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                sock = server.connect()
            except ConnectionRefusedError:
                results.append("refused")
                continue
            with sock:
                try:
                    sock.sendall(b"GET /slow?0.5 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    results.append(str(ResponseReader(sock).next()[0]))
                except (OSError, AssertionError) as exc:
                    results.append(repr(exc))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    wait_for(lambda: results.count("200") >= 2, message="slow requests served")
    server.send(signal.SIGTERM)
    assert server.wait_exit(timeout=DEADLINE) == 0  # far below --graceful-timeout
    stop.set()
    for thread in threads:
        thread.join(DEADLINE)
    assert set(results) <= {"200", "refused"}, results
