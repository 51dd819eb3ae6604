"""Smaller engine promises: preload, process titles, default worker count, backlog, log reopening."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import textwrap

import pytest

from conftest import SHAREDSOCK, http_get, pid_of, wait_for


def test_default_workers_follow_cpu_affinity():
    if not shutil.which("taskset"):
        pytest.skip("taskset (util-linux) is not installed")
    result = subprocess.run(["taskset", "-c", "0", SHAREDSOCK, "--print-config"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "workers                  = 1\n" in result.stdout


def test_preload_loads_in_master_and_warns_about_threads(start_server, tmp_path):
    (tmp_path / "threaded_app.py").write_text(textwrap.dedent("""
        import os, threading, time
        LOADED_IN = os.getpid()
        threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [f"loaded_in={LOADED_IN} pid={os.getpid()}".encode()]
    """))
    server = start_server(["--bind", "127.0.0.1:0", "--preload", "--workers", "2", "threaded_app:app"],
                          cwd=tmp_path, workers=2)
    body = http_get(server, "/")[2]
    assert f"loaded_in={server.proc.pid}".encode() in body
    assert pid_of(body) != server.proc.pid
    assert "fork safety: the app built in the master started threads, which do not survive" in server.log()
    assert "running time.sleep" in server.log()
    assert server.stop() == 0


def test_process_titles(start_server):
    pytest.importorskip("setproctitle", reason="setproctitle is an optional extra")
    server = start_server(["--bind", "127.0.0.1:0", "--workers", "1", "testapp:app"])
    worker = server.booted_pids()[0]

    def title(pid: int) -> str:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode().strip()

    wait_for(lambda: title(server.proc.pid).startswith("sharedsock: master [testapp:app]"),
             message="master title")
    assert title(worker).startswith("sharedsock: worker [testapp:app]")


def test_backlog_above_somaxconn_warns(start_server):
    with open("/proc/sys/net/core/somaxconn") as f:
        limit = int(f.read())
    server = start_server(["--bind", "127.0.0.1:0", "--backlog", str(limit + 1), "testapp:app"])
    assert f"above net.core.somaxconn ({limit})" in server.log()


def test_sigusr1_reopens_access_log(start_server, tmp_path):
    log = tmp_path / "access.log"
    server = start_server(["--bind", "127.0.0.1:0", "--access-log", str(log), "testapp:app"])
    http_get(server, "/before")
    wait_for(lambda: log.exists() and "/before" in log.read_text(), message="first access line")
    rotated = tmp_path / "access.log.1"
    os.rename(log, rotated)
    server.send(signal.SIGUSR1)
    wait_for(lambda: log.exists(), message="log file reopened")
    http_get(server, "/after")
    wait_for(lambda: "/after" in log.read_text(), message="line in the new file")
    assert "/after" not in rotated.read_text()


def test_failed_reload_keeps_old_generation(start_server, tmp_path, start_method):
    module = tmp_path / "hupme.py"
    module.write_text(textwrap.dedent("""
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"old code"]
    """))
    server = start_server(["--bind", "127.0.0.1:0", "--workers", "2", "--start-method", start_method,
                           "hupme:app"], cwd=tmp_path, workers=2,
                          env={"PYTHONDONTWRITEBYTECODE": "1"})  # same-size edits within a second
    module.write_text("raise ImportError('the new release is broken')\n")
    server.send(signal.SIGHUP)
    server.wait_log("reload failed: ImportError: the new release is broken")
    assert http_get(server, "/")[2] == b"old code"
    module.write_text(textwrap.dedent("""
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"new code"]
    """))
    server.send(signal.SIGHUP)
    wait_for(lambda: http_get(server, "/")[2] == b"new code", message="the fixed release")
    assert server.proc.poll() is None
    assert server.stop() == 0


def test_full_worker_evicts_longest_idle_keepalive_connection(start_server):
    server = start_server(["--bind", "127.0.0.1:0", "--workers", "1", "--worker-connections", "20",
                           "--keepalive", "300", "testapp:app"])
    idle = []
    for _ in range(25):  # more served keep-alive clients than the worker holds
        sock = server.connect()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while b"\n" not in data.partition(b"\r\n\r\n")[2]:
            data += sock.recv(4096)
        assert data.startswith(b"HTTP/1.1 200")
        idle.append(sock)
    status, _, _ = http_get(server, "/fresh")  # a new client is still served at once
    assert status == 200

    def closed(sock) -> bool:
        sock.settimeout(0.01)
        try:
            return sock.recv(1) == b""
        except (TimeoutError, BlockingIOError):
            return False
        except ConnectionResetError:
            return True

    assert closed(idle[0]), "the longest-idle connection should have made room"
    assert not closed(idle[-1])
    for sock in idle:
        sock.close()


@pytest.mark.parametrize("threads", ["1", "3"])
def test_new_client_is_served_while_keepalive_clients_keep_every_thread_busy(start_server, threads):
    """Keep-alive clients that always have a request ready must not starve a client in the backlog."""
    import threading

    server = start_server(["--bind", "127.0.0.1:0", "--workers", "1", "--threads", threads,
                           "testapp:app"])
    stop = threading.Event()
    served = [0]

    def hammer() -> None:
        with server.connect() as sock:
            while not stop.is_set():
                sock.sendall(b"GET /slow?0.02 HTTP/1.1\r\nHost: t\r\n\r\n")
                data = b""
                while not data.endswith(b"\n") or b"\r\n\r\n" not in data:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                served[0] += 1

    clients = [threading.Thread(target=hammer, daemon=True) for _ in range(12)]
    for t in clients:
        t.start()
    try:
        wait_for(lambda: served[0] >= 30, message="the keep-alive clients to be served")
        status, _, body = http_get(server, "/fresh")  # fails after DEADLINE if starved
        assert status == 200 and b"path=/fresh" in body
        assert not stop.is_set()
    finally:
        stop.set()
        for t in clients:
            t.join(30)


def test_sigterm_closes_idle_keepalive_connections_of_a_thread_pool(start_server):
    """Connections the pool put back in the selector itself are closed on drain like any
    other idle one: the worker leaves at once, not after --graceful-timeout."""
    from conftest import DEADLINE, ResponseReader

    server = start_server(["--bind", "127.0.0.1:0", "--workers", "1", "--threads", "3",
                           "--keepalive", "600", "--graceful-timeout", str(DEADLINE * 10),
                           "testapp:app"])
    socks = [server.connect() for _ in range(6)]
    readers = [ResponseReader(s) for s in socks]
    for _ in range(3):  # every request goes through the pool and back
        for sock in socks:
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        for reader in readers:
            status, _, _ = reader.next()
            assert status == 200
    busy = server.connect()
    busy.sendall(b"GET /slow?1 HTTP/1.1\r\nHost: t\r\n\r\n")
    server.wait_log("slow request started")
    server.send(signal.SIGTERM)
    for reader in readers:
        assert reader.closed(), "an idle keep-alive connection was left open during drain"
    status, headers, body = ResponseReader(busy).next()
    assert status == 200 and b"path=/slow" in body
    assert headers.get("connection") == "close"
    assert server.wait_exit() == 0  # within DEADLINE, far below --graceful-timeout
    for sock in [*socks, busy]:
        sock.close()


def test_a_pool_worker_leaves_a_burst_of_keepalive_clients_to_its_siblings(start_server):
    """With --threads, a worker accepts only as many clients as it has idle threads: kept-alive
    clients stay where they were accepted, so one worker taking a whole burst would leave the
    others idle for as long as those clients live."""
    import threading

    from conftest import ResponseReader

    server = start_server(["--bind", "127.0.0.1:0", "--workers", "2", "--threads", "2",
                           "testapp:app"], workers=2)
    socks: list = []
    pids: list[int] = []

    def ask() -> None:
        sock = server.connect()
        socks.append(sock)
        sock.sendall(b"GET /slow?0.5 HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, body = ResponseReader(sock).next()
        assert status == 200
        pids.append(pid_of(body))

    workers = server.booted_pids()
    for pid in workers:  # the burst waits in the backlog whole, as one from a load balancer would
        os.kill(pid, signal.SIGSTOP)
    threads = [threading.Thread(target=ask) for _ in range(16)]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: len(socks) == 16, message="16 clients to connect")
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    for t in threads:
        t.join(60)
    assert len(pids) == 16
    assert len(set(pids)) == 2, f"one worker took every client: {sorted(set(pids))}"
    for sock in socks:
        sock.close()


def test_a_busy_pool_worker_lets_a_burst_in_as_fast_as_its_threads_free_up(start_server):
    """A burst of keep-alive clients is let in one per finished request, not one per pass
    through the queue of requests from clients already in: with 64 clients and a 10 ms app
    the last one used to wait seconds. Counted in requests served, not in time."""
    import threading

    from conftest import ResponseReader

    clients = 16
    server = start_server(["--bind", "127.0.0.1:0", "--workers", "1", "--threads", "2",
                           "testapp:app"])
    lock = threading.Lock()
    served = [0]
    served_before_first: list[int] = []
    connected: list = []
    stop = threading.Event()

    def client() -> None:
        with server.connect() as sock:
            connected.append(sock)
            reader = ResponseReader(sock)
            first = True
            while not stop.is_set():
                sock.sendall(b"GET /slow?0.02 HTTP/1.1\r\nHost: t\r\n\r\n")
                status, _, _ = reader.next()
                assert status == 200
                with lock:
                    if first:
                        served_before_first.append(served[0])
                        first = False
                    served[0] += 1

    [pid] = server.booted_pids()
    os.kill(pid, signal.SIGSTOP)  # the whole burst waits in the backlog
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: len(connected) == clients, message=f"{clients} clients to connect")
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        wait_for(lambda: len(served_before_first) == clients, message="every client's first response")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    # Let in one per finished request: the last waits about `clients` requests. One per
    # pass through the queue: about clients**2 / 2.
    assert max(served_before_first) <= 3 * clients, sorted(served_before_first)


def _minor_faults(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


@pytest.mark.skipif(not os.path.exists("/proc/self/stat") or not os.confstr("CS_GNU_LIBC_VERSION"),
                    reason="needs Linux /proc and glibc")
@pytest.mark.parametrize("env, reused", [({}, True),
                                         ({"MALLOC_TRIM_THRESHOLD_": "131072",
                                           "MALLOC_MMAP_THRESHOLD_": "131072"}, False)])
def test_workers_reuse_the_memory_a_request_freed(start_server, env, reused):
    """A 1 MiB body built per request is not faulted in page by page again on every
    request, unless the environment tells glibc otherwise."""
    server = start_server(["--bind", "127.0.0.1:0", "--workers", "1", "testapp:app"], env=env)
    [pid] = server.booted_pids()
    for _ in range(3):  # warm up: the first requests grow the heap
        assert http_get(server, "/alloc?1048576")[0] == 200
    before = _minor_faults(pid)
    requests = 20
    for _ in range(requests):
        status, _, body = http_get(server, "/alloc?1048576")
        assert status == 200 and len(body) == 1048576
    per_request = (_minor_faults(pid) - before) / requests
    pages = 1048576 // os.sysconf("SC_PAGE_SIZE")
    if reused:
        assert per_request < pages / 8, per_request
    else:
        assert per_request > pages / 2, per_request
