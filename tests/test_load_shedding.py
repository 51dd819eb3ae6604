"""Load shedding: --max-queue and --max-queue-wait answer 503 instead of queueing, without the app.

Deterministic: the app (apps/shed_app.py) blocks each request on a FIFO gate the test
opens, so the test knows which requests hold the threads, which wait and which are shed;
it counts the app's calls in a file. A request is known to be in the server's kernel
buffer once the client's TCP stack reports it acknowledged.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from test_health_metrics import scrape, status_url

from conftest import (
    DEADLINE,
    SHAREDSOCK,
    Gates,
    ResponseReader,
    called,
    calls,
    debian_binary,
    http_get,
    pid_of,
    stop_process_group,
    wait_for,
)

QUEUE_FULL = r"worker {pid}: queue full \(--max-queue\), not accepting"


class Client:
    """A kept-alive connection that sends requests and reads responses one at a time."""

    def __init__(self, server) -> None:
        self.sock = server.connect()
        self.reader = ResponseReader(self.sock)

    def send(self, target: str, method: str = "GET", body: bytes = b"", close: bool = False) -> None:
        head = f"{method} {target} HTTP/1.1\r\nHost: t\r\n"
        if body:
            head += f"Content-Length: {len(body)}\r\n"
        if close:
            head += "Connection: close\r\n"
        self.sock.sendall(head.encode() + b"\r\n" + body)

    def read(self) -> tuple[int, dict, bytes]:
        return self.reader.next()

    def get(self, target: str) -> tuple[int, dict, bytes]:
        self.send(target)
        return self.read()

    def delivered(self) -> bool:
        """The server's kernel has acknowledged every byte sent: the request is in its buffer."""
        info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        return struct.unpack_from("I", info, 24)[0] == 0  # tcpi_unacked

    def closed_cleanly(self) -> bool:
        """The server shut the connection down with a FIN, not a reset, after its response."""
        assert not self.reader.buffer
        return self.sock.recv(1) == b""  # a reset raises ConnectionResetError instead

    def close(self) -> None:
        self.sock.close()


def _args(*extra: str) -> list[str]:
    return ["--bind", "127.0.0.1:0", "--metrics-bind", "127.0.0.1:0", "--log-level", "debug",
            "--access-log", "-", *extra, "shed_app:app"]


def _start(start_server, gates: Gates, *extra: str, workers: int = 1):
    return start_server(_args("--workers", str(workers), *extra), workers=workers,
                        env={"SHED_DIR": str(gates.folder)})


def _clients(server, count: int) -> list[Client]:
    """Connections the worker holds kept alive, each having been served once."""
    clients = [Client(server) for _ in range(count)]
    for n, client in enumerate(clients):
        assert client.get(f"/warm?{n}")[0] == 200
    return clients


def _assert_shed(response: tuple[int, dict, bytes], retry_after: str = "1") -> None:
    status, headers, body = response
    assert status == 503, response
    assert headers["retry-after"] == retry_after
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body) < 100


def _shed_counts(url: str) -> dict[str, float]:
    samples = scrape(url)
    counts = {dict(labels)["reason"]: value for (name, labels), value in samples.items()
              if name == "sharedsock_server_requests_shed_total"}
    per_worker = Counter()
    for (name, labels), value in samples.items():
        if name == "sharedsock_requests_shed_total":
            per_worker[dict(labels)["reason"]] += value
    assert per_worker == Counter(counts)  # one live worker or several: they add up to the total
    return counts


def _requests_total(url: str) -> float:
    return sum(v for (name, _), v in scrape(url).items() if name == "sharedsock_requests_total")


def test_a_full_queue_is_answered_503_without_the_app(start_server, gates, start_method):
    gates.make("one", "two", "three")
    server = _start(start_server, gates, "--threads", "2", "--max-queue", "1", "--retry-after", "7",
                    "--start-method", start_method)
    url = status_url(server)
    clients = _clients(server, 4)
    pid = pid_of(clients[0].get("/pid")[2])
    clients[0].send("/block?one")
    clients[1].send("/block?two")
    wait_for(lambda: called(gates, "/block?one") and called(gates, "/block?two"),
             message="both threads in the app")
    clients[2].send("/block?three")  # waits for a thread: the queue (1) is full
    server.wait_log(QUEUE_FULL.format(pid=pid))
    # The shed request has a body larger than the server reads ahead: it must still get the
    # 503 and a clean close while the rest of its body arrives.
    clients[3].send("/block?four", method="POST", body=b"b" * 300_000)
    _assert_shed(clients[3].read(), retry_after="7")
    assert clients[3].closed_cleanly()
    assert server.wait_log(r'"POST /block\?four HTTP/1.1" 503 ')
    for name in ("one", "two", "three"):
        gates.release(name)
    for n, name in enumerate(("one", "two", "three")):
        status, _, body = clients[n].read()
        assert status == 200 and body.endswith(f"/block?{name}\n".encode())
    assert not called(gates, "/block?four")
    assert len([line for line in calls(gates) if "/block?" in line]) == 3
    server.wait_log(r"worker \d+: queue below --max-queue, accepting again")
    assert http_get(server, "/after")[0] == 200  # and it serves new clients again
    assert clients[0].get("/again")[0] == 200
    wait_for(lambda: _shed_counts(url) == {"queue": 1, "wait": 0}, message="1 shed request in /metrics")
    # 4 warm-ups, /pid, 3 blocked, /after, /again: the shed one is not among the requests.
    wait_for(lambda: _requests_total(url) == 10, message="10 requests in /metrics")
    server.wait_log(r"worker \d+ shed 1 request\(s\) with 503: 1 with its queue full")
    assert server.stop() == 0


def test_a_request_that_waited_too_long_is_answered_503(start_server, gates, start_method):
    """One waits in the worker's queue, one in the kernel's accept queue: the bound counts both."""
    bound = 0.2
    gates.make("one", "two")
    server = _start(start_server, gates, "--threads", "2", "--max-queue-wait", str(bound),
                    "--start-method", start_method)
    url = status_url(server)
    clients = _clients(server, 3)
    clients[0].send("/block?one")
    clients[1].send("/block?two")
    wait_for(lambda: called(gates, "/block?one") and called(gates, "/block?two"),
             message="both threads in the app")
    clients[2].send("/block?queued")
    fresh = Client(server)  # every thread is busy: it stays in the listener's backlog
    fresh.send("/block?backlog", close=True)
    wait_for(lambda: clients[2].delivered() and fresh.delivered(), message="both requests delivered")
    time.sleep(bound * 2)  # the point of the test: they wait longer than the bound
    gates.release("one")
    assert clients[0].read()[0] == 200
    for client in (fresh, clients[2]):
        _assert_shed(client.read())
        assert client.closed_cleanly()
    assert not called(gates, "/block?queued") and not called(gates, "/block?backlog")
    gates.release("two")
    assert clients[1].read()[0] == 200  # it was in the app before the bound passed: served
    assert http_get(server, "/after")[0] == 200
    wait_for(lambda: _shed_counts(url) == {"queue": 0, "wait": 2}, message="2 shed requests in /metrics")
    assert server.stop() == 0


def test_inline_the_requests_ready_behind_a_running_one_are_the_queue(start_server, gates):
    """--threads 1: requests that became ready while one ran wait behind each other; beyond
    --max-queue of them (after the first, which runs next) they are shed at once."""
    gates.make("one", "two", "three", "four")
    server = _start(start_server, gates, "--threads", "1", "--max-queue", "1")
    url = status_url(server)
    clients = _clients(server, 4)
    clients[0].send("/block?one")
    wait_for(lambda: called(gates, "/block?one"), message="the first request in the app")
    for client, name in zip(clients[1:], ("two", "three", "four")):
        client.send(f"/block?{name}")
        gates.release(name)  # none of them blocks once it runs
    wait_for(lambda: all(c.delivered() for c in clients[1:]), message="three requests delivered")
    gates.release("one")
    assert clients[0].read()[0] == 200
    results = {name: client.read() for client, name in zip(clients[1:], ("two", "three", "four"))}
    statuses = sorted(status for status, _, _ in results.values())
    assert statuses == [200, 200, 503]
    for name, response in results.items():
        assert called(gates, f"/block?{name}") == (response[0] == 200)
        if response[0] == 503:
            _assert_shed(response)
    assert http_get(server, "/after")[0] == 200
    wait_for(lambda: _shed_counts(url) == {"queue": 1, "wait": 0}, message="1 shed request in /metrics")


def test_inline_max_queue_wait(start_server, gates):
    bound = 0.2
    gates.make("one", "two")
    server = _start(start_server, gates, "--threads", "1", "--max-queue-wait", str(bound))
    url = status_url(server)
    clients = _clients(server, 2)
    clients[0].send("/block?one")
    wait_for(lambda: called(gates, "/block?one"), message="the first request in the app")
    clients[1].send("/block?two")
    wait_for(clients[1].delivered, message="the second request delivered")
    time.sleep(bound * 2)  # the point of the test: it waits longer than the bound
    gates.release("one")
    assert clients[0].read()[0] == 200
    _assert_shed(clients[1].read())
    assert clients[1].closed_cleanly()
    assert not called(gates, "/block?two")
    assert clients[0].get("/again")[0] == 200  # served at once: no wait
    wait_for(lambda: _shed_counts(url) == {"queue": 0, "wait": 1}, message="1 shed request in /metrics")


def _clients_per_worker(server, pids: list[int]) -> tuple[int, list[Client], int, list[Client]]:
    """Kept-alive connections until one worker (A) holds 3 and the other (B) 2, whichever the
    kernel hands them to: (A's pid, A's connections, B's pid, B's connections)."""
    held: dict[int, list[Client]] = {pid: [] for pid in pids}
    for _ in range(300):
        for a, b in (pids, pids[::-1]):
            if len(held[a]) >= 3 and len(held[b]) >= 2:
                for pid in pids:
                    for client in held[pid][3 if pid == a else 2:]:
                        client.close()
                return a, held[a][:3], b, held[b][:2]
        client = Client(server)
        held[pid_of(client.get("/pid")[2])].append(client)
    raise AssertionError(f"could not get 3 and 2 connections on {pids}")


def test_a_shedding_worker_leaves_new_clients_to_its_siblings(start_server, gates, start_method):
    """Worker A has its threads busy and its queue full; B has its threads busy. A client
    arrives. A's first thread to free up serves A's queue, not the newcomer, so the newcomer
    goes to B once B has a thread free, although A had one first."""
    gates.make("a1", "a2", "q", "b1", "b2")
    server = _start(start_server, gates, "--threads", "2", "--max-queue", "1",
                    "--start-method", start_method, workers=2)
    pid_a, a, pid_b, b = _clients_per_worker(server, server.booted_pids()[:2])
    a[0].send("/block?a1")
    a[1].send("/block?a2")
    b[0].send("/block?b1")
    b[1].send("/block?b2")
    wait_for(lambda: all(called(gates, f"/block?{g}") for g in ("a1", "a2", "b1", "b2")),
             message="every thread of both workers in the app")
    a[2].send("/block?q")
    server.wait_log(QUEUE_FULL.format(pid=pid_a))
    newcomer = Client(server)
    newcomer.send("/pid?new", close=True)
    wait_for(newcomer.delivered, message="the newcomer's request delivered")
    gates.release("a1")
    assert a[0].read()[0] == 200
    wait_for(lambda: called(gates, "/block?q"), message="A's free thread on its queued request")
    gates.release("b1")
    status, _, body = newcomer.read()
    assert status == 200 and pid_of(body) == pid_b
    for name, client in (("a2", a[1]), ("q", a[2]), ("b2", b[1])):
        gates.release(name)
        assert client.read()[0] == 200


def test_inline_a_full_pass_leaves_new_clients_to_its_siblings(start_server, gates):
    """--threads 1 --max-queue 0: when A's request ends, two more are ready and a client waits
    in the backlog. A runs one, sheds the other and does not take the client, which B serves
    once B's own request ends."""
    gates.make("a0", "a1", "a2", "b0")
    server = _start(start_server, gates, "--threads", "1", "--max-queue", "0", workers=2)
    _, a, pid_b, b = _clients_per_worker(server, server.booted_pids()[:2])
    a[0].send("/block?a0")
    b[0].send("/block?b0")
    wait_for(lambda: called(gates, "/block?a0") and called(gates, "/block?b0"),
             message="both workers in the app")
    a[1].send("/block?a1")
    a[2].send("/block?a2")
    newcomer = Client(server)
    newcomer.send("/pid?new", close=True)
    wait_for(lambda: a[1].delivered() and a[2].delivered() and newcomer.delivered(),
             message="the requests delivered")
    gates.release("a0")
    assert a[0].read()[0] == 200
    wait_for(lambda: called(gates, "/block?a1") or called(gates, "/block?a2"),
             message="A running one of the two")
    shed = a[2] if called(gates, "/block?a1") else a[1]
    _assert_shed(shed.read())
    gates.release("b0")
    assert b[0].read()[0] == 200
    status, _, body = newcomer.read()
    assert status == 200 and pid_of(body) == pid_b
    gates.release("a1")  # whichever of the two ran waits at its gate: open both
    gates.release("a2")


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--max-queue", "-1", "--max-queue: expected a number of requests (0 or more) or off, got '-1'"),
    ("--max-queue", "many", "--max-queue: expected an integer, got 'many'"),
    ("--max-queue-wait", "-0.5", "--max-queue-wait: must be at least 0, got -0.5"),
    ("--retry-after", "soon", "--retry-after: expected an integer, got 'soon'"),
])
def test_bad_values_are_one_line_and_exit_2(flag, value, message):
    proc = subprocess.run([SHAREDSOCK, flag, value, "shed_app:app"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"sharedsock: error: {message}"]


def test_max_queue_off_and_zero_from_the_environment():
    from sharedsock.config import build_config

    assert build_config(("environment", {"max_queue": "off"})).max_queue is None
    assert build_config(("environment", {"max_queue": "0"})).max_queue == 0
    assert build_config().max_queue is None and build_config().max_queue_wait == 0


def test_the_overload_benchmark_runs(tmp_path):
    """benchmarks/overload.py is a measurement, not a test; this only keeps it working."""
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "overload.py"
    proc = subprocess.run([sys.executable, str(script), "--servers", "shed,noshed", "--rounds", "1",
                           "--duration", "1", "--factor", "2", "--client-timeout", "2", "--clients", "1"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| sharedsock")]
    assert len(rows) == 4, proc.stdout


def test_the_answer_to_a_head_request_has_no_body():
    from sharedsock.shedding import BODY, Shedder

    get, _, get_body = Shedder(3, "sharedsock").answer("GET")
    head, headers, head_body = Shedder(3, "sharedsock").answer("HEAD")
    assert get.endswith(b"\r\n\r\n" + BODY) and get_body == len(BODY)
    assert head.endswith(b"\r\n\r\n") and head_body == 0
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"\r\nRetry-After: 3\r\n" in head and b"\r\nConnection: close\r\n" in head
    assert ("Content-Length", str(len(BODY))) in headers


HAPROXY_RETRIES = """
global
    pidfile {d}/haproxy.pid
defaults
    mode http
    timeout connect 10s
    timeout client 30s
    timeout server 30s
frontend edge
    bind 127.0.0.1:{port}
    default_backend app
backend app
    balance first
    retry-on 503 conn-failure empty-response
    retries 2
    option redispatch 1
    server a 127.0.0.1:{a} maxconn 100
    server b 127.0.0.1:{b} maxconn 100
"""


def _haproxy(tmp_path: Path, a: int, b: int) -> tuple[subprocess.Popen, int]:
    """HAProxy with the README's retry settings, on a free port (picked again if taken)."""
    binary = debian_binary("haproxy", "haproxy")
    for _ in range(5):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        conf = tmp_path / "haproxy.cfg"
        conf.write_text(HAPROXY_RETRIES.format(d=tmp_path, port=port, a=a, b=b))
        out = open(tmp_path / "haproxy.log", "wb")
        proc = subprocess.Popen([binary, "-db", "-f", str(conf)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        out.close()

        def listening(proc: subprocess.Popen = proc, port: int = port) -> bool:
            if proc.poll() is not None:
                return True
            try:
                socket.create_connection(("127.0.0.1", port), 2).close()
            except OSError:
                return False
            return True

        wait_for(listening, message="haproxy to listen")
        if proc.poll() is None:
            return proc, port
    raise AssertionError((tmp_path / "haproxy.log").read_text())


def test_haproxy_retries_a_shed_request_on_another_server(start_server, gates, tmp_path):
    """The README's HAProxy backend: a request shed by one server is answered by the other.

    HAProxy (balance first) sends it to A, whose threads are busy: it waits in A's accept
    queue past A's --max-queue-wait, A answers 503 when a thread frees up, HAProxy retries
    on B, and the client gets B's 200.
    """
    gates.make("a1", "a2")
    a = _start(start_server, gates, "--threads", "2", "--max-queue-wait", "0.1")
    b = _start(start_server, gates, "--threads", "2")
    a_url = status_url(a)
    pid_b = pid_of(http_get(b, "/pid")[2])
    proc, port = _haproxy(tmp_path, a.port, b.port)
    try:
        blockers = [Client(a), Client(a)]
        blockers[0].send("/block?a1")
        blockers[1].send("/block?a2")
        wait_for(lambda: called(gates, "/block?a1") and called(gates, "/block?a2"),
                 message="A's threads in the app")
        client = socket.create_connection(("127.0.0.1", port), DEADLINE)
        client.sendall(b"GET /pid?balanced HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        queued = ("sharedsock_listen_queue_length", (("listener", a.url),))
        wait_for(lambda: scrape(a_url).get(queued) == 1, message="HAProxy's connection in A's backlog")
        time.sleep(0.3)  # the point of the test: it waits longer than A's bound
        gates.release("a1")
        status, _, body = ResponseReader(client).next()
        assert status == 200 and pid_of(body) == pid_b
        assert a.wait_log(r'"GET /pid\?balanced HTTP/1.1" 503 ')
        assert b.wait_log(r'"GET /pid\?balanced HTTP/1.1" 200 ')
        assert [line for line in calls(gates) if line.endswith(" /pid?balanced")] == [
            f"{pid_b} /pid?balanced"]  # A's app never saw it
        gates.release("a2")
    except BaseException:
        print((tmp_path / "haproxy.log").read_text())
        raise
    finally:
        stop_process_group(proc)
