"""Supervision: crashes, hangs, reloads, scaling and stops, under both start methods."""

from __future__ import annotations

import os
import signal

import pytest

from conftest import BackgroundLoop, http_get, pid_of, process_alive, wait_for


def _serve_args(method: str, *extra: str) -> list[str]:
    return ["--bind", "127.0.0.1:0", "--start-method", method, *extra, "testapp:app"]


class RequestLoop(BackgroundLoop):
    """Fresh-connection requests in a background thread; records every failure."""

    def __init__(self, server, path: str = "/") -> None:
        super().__init__()
        self.server = server
        self.path = path
        self.ok = 0
        self.failures: list[str] = []
        self.pids: list[int] = []

    def step(self) -> None:
        try:
            status, _, body = http_get(self.server, self.path, timeout=30)
            if status != 200:
                self.failures.append(f"status {status}")
            else:
                self.ok += 1
                self.pids.append(pid_of(body))
        except Exception as exc:
            self.failures.append(repr(exc))

    def wait_for_requests(self, count: int) -> None:
        target = self.ok + count
        wait_for(lambda: self.ok >= target or self.failures, message=f"{count} more requests")


def test_killed_worker_is_replaced_under_load(start_server, start_method):
    server = start_server(_serve_args(start_method, "--workers", "2"), workers=2)
    victim = server.booted_pids()[0]
    with RequestLoop(server) as loop:
        loop.wait_for_requests(20)
        os.kill(victim, signal.SIGKILL)
        server.wait_log(rf"worker {victim} \(generation 1\) died: signal SIGKILL")
        server.wait_ready(workers=3)
        loop.wait_for_requests(50)
    replacement = set(server.booted_pids()) - {victim}
    assert len(replacement) == 2
    assert "OOM killer" in server.log()
    assert server.stop() == 0


def test_crashing_worker_is_replaced_and_reason_logged(start_server, start_method):
    server = start_server(_serve_args(start_method, "--workers", "1"))
    old = server.booted_pids()[0]
    try:
        http_get(server, "/crash")
    except Exception:
        pass
    server.wait_log(rf"worker {old} \(generation 1\) died: exit code 13")
    server.wait_ready(workers=2)
    status, _, body = http_get(server, "/")
    assert status == 200 and pid_of(body) != old
    assert server.stop() == 0


def test_sighup_reloads_without_losing_requests(start_server, start_method):
    server = start_server(_serve_args(start_method, "--workers", "2"), workers=2)
    first = set(server.booted_pids())
    with RequestLoop(server) as loop:
        for generation in (2, 3, 4):
            loop.wait_for_requests(40)
            server.send(signal.SIGHUP)
            server.wait_log(rf"Booted worker \d+ \(generation {generation}\)", count=2)
        loop.wait_for_requests(80)
    assert loop.failures == []
    assert loop.ok >= 200
    latest = {int(p) for p, g in __import__("re").findall(r"Booted worker (\d+) \(generation (\d+)\)",
                                                          server.log()) if g == "4"}
    assert len(latest) == 2 and not latest & first
    wait_for(lambda: not any(process_alive(p) for p in first), message="old workers to exit")
    status, _, body = http_get(server, "/")
    assert pid_of(body) in latest
    assert server.stop() == 0


def test_sigterm_finishes_inflight_request(start_server, start_method):
    server = start_server(_serve_args(start_method, "--workers", "1", "--graceful-timeout", "30"))
    sock = server.connect()
    sock.sendall(b"GET /slow?2 HTTP/1.1\r\nHost: t\r\n\r\n")
    server.wait_log("slow request started")
    server.send(signal.SIGTERM)
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    assert b"Connection: close" in data
    assert b"path=/slow" in data
    assert server.wait_exit() == 0


def test_ttin_ttou_change_worker_count(start_server, start_method):
    server = start_server(_serve_args(start_method, "--workers", "1"))
    server.send(signal.SIGTTIN)
    server.wait_ready(workers=2)
    server.send(signal.SIGTTIN)
    server.wait_ready(workers=3)
    pids = server.booted_pids()
    assert all(process_alive(p) for p in pids)
    server.send(signal.SIGTTOU)
    wait_for(lambda: sum(process_alive(p) for p in pids) == 2, message="one worker to leave")
    server.send(signal.SIGTTOU)
    server.send(signal.SIGTTOU)  # never below one
    wait_for(lambda: sum(process_alive(p) for p in pids) == 1, message="down to one worker")
    status, _, _ = http_get(server, "/")
    assert status == 200
    assert sum(process_alive(p) for p in pids) == 1
    assert server.stop() == 0


@pytest.mark.parametrize("attempt", range(5))
def test_sigterm_while_workers_recycle_stops_promptly(start_server, attempt):
    """A SIGTERM that reaches a just-forked worker before it has its own handlers used to be
    taken by the master's handler copied into the child, and lost: the worker served on until
    --graceful-timeout. Workers that recycle every few requests fork all the time, so a
    shutdown under load often hit that window (9 of 25 in a stress run before the fix).
    Several attempts, because the window is short."""
    server = start_server(_serve_args("fork", "--workers", "2", "--max-requests", "3",
                                      "--graceful-timeout", "300"), workers=2)
    with RequestLoop(server) as loop:
        wait_for(lambda: len(server.booted_pids()) >= 4 + attempt, message="workers to recycle")
        server.send(signal.SIGTERM)
        assert server.wait_exit() == 0  # within DEADLINE, far below --graceful-timeout
    assert loop.ok > 0


def test_max_requests_recycles_without_failures(start_server, start_method):
    server = start_server(_serve_args(start_method, "--workers", "2", "--max-requests", "30",
                                      "--max-requests-jitter", "5"), workers=2)
    with RequestLoop(server) as loop:
        wait_for(lambda: len(server.booted_pids()) >= 5 or loop.failures, timeout=120,
                 message="workers to be recycled")
        loop.wait_for_requests(20)
    assert loop.failures == []
    assert "asking to be replaced" in server.log()
    assert len(set(loop.pids)) >= 3
    assert server.stop() == 0


@pytest.mark.parametrize("threads", ["1", "2"])
def test_hung_request_is_killed_answered_504_and_stack_logged(start_server, start_method, threads):
    server = start_server(_serve_args(start_method, "--workers", "1", "--threads", threads,
                                      "--timeout", "2"))
    old = server.booted_pids()[0]
    status, _, body = http_get(server, "/hang", timeout=60)
    assert status == 504
    log = server.wait_log(rf"worker {old} timed out")[0].string
    server.wait_log(r"in app")  # the stuck frame of testapp.app is in the dump
    assert "testapp.py" in server.log()
    assert ("no heartbeat" in log) if threads == "1" else ("a request running" in log)
    server.wait_ready(workers=2)
    status, _, body = http_get(server, "/")
    assert status == 200 and pid_of(body) != old
    assert server.stop() == 0


def test_broken_app_stops_master_with_reason(start_server, start_method):
    server = start_server(["--bind", "127.0.0.1:0", "--start-method", start_method, "broken_app:app"],
                          wait=False)
    code = server.wait_exit()
    assert code == 2
    log = server.log()
    assert "app failed to load: ZeroDivisionError: broken on purpose" in log
    assert "broken_app.py, line 3" in log
    assert "Traceback" not in log
    assert log.count("Booted worker") == 0
    assert "Listening at" not in log  # the error comes with no banner saying it serves


def test_broken_app_under_reload_says_where_it_listens_after_the_error(start_server, start_method):
    server = start_server(["--bind", "127.0.0.1:0", "--start-method", start_method, "--reload",
                           "broken_app:app"], wait=False)
    server.wait_log("Listening at")
    log = server.log()
    assert log.index("app failed to load") < log.index("Listening at")
    assert server.stop() == 0


def test_missing_module_is_one_line_exit_2(start_server, start_method):
    server = start_server(["--bind", "127.0.0.1:0", "--start-method", start_method, "no_such_mod:app"],
                          wait=False)
    assert server.wait_exit() == 2
    assert "cannot import 'no_such_mod'" in server.log()
    assert "Traceback" not in server.log()


def test_second_sigint_stops_at_once(start_server, start_method):
    server = start_server(["--bind", "127.0.0.1:0", "--workers", "1", "--graceful-timeout", "120",
                           "--start-method", start_method, "testapp:app"])
    sock = server.connect()
    sock.sendall(b"GET /slow?60 HTTP/1.1\r\nHost: t\r\n\r\n")
    server.wait_log("slow request started")
    server.send(signal.SIGINT)
    server.wait_log("stopping gracefully")
    assert server.proc.poll() is None  # still waiting for the slow request
    server.send(signal.SIGINT)
    assert server.wait_exit(timeout=20) == 0
    sock.close()


def test_sigquit_stops_at_once(start_server, start_method):
    server = start_server(["--bind", "127.0.0.1:0", "--workers", "2", "--start-method", start_method,
                           "testapp:app"], workers=2)
    pids = server.booted_pids()
    server.send(signal.SIGQUIT)
    assert server.wait_exit(timeout=20) == 0
    wait_for(lambda: not any(process_alive(p) for p in pids), message="workers gone")
