"""Slow, idle and numerous clients: timeouts, and app threads kept for real work.

Clients here are slow on purpose, so some sleep between sends: that is the
behaviour under test, not a wait for the server.
"""

from __future__ import annotations

import json
import resource
import select
import socket
import time

import pytest

from conftest import ResponseReader, at, listener_urls, module_server, read_until_close

H = b"Host: test\r\n"


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Short timeouts, so the cut-offs happen within the test."""
    srv = module_server(tmp_path_factory, [
        "--workers", "1", "--threads", "2", "--header-timeout", "1", "--body-timeout", "1",
        "--keepalive", "1", "--min-body-rate", "200000", "http_apps:raw_app"])
    yield srv
    srv.kill()
    assert "AssertionError" not in srv.log()


@pytest.fixture(params=["tcp", "unix"])
def quick_at(quick, request):
    return at(quick, listener_urls(quick)[request.param])


def test_head_not_finished_in_time_is_408(quick_at):
    with quick_at.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n" + H)  # the blank line never comes
        raw = read_until_close(sock)
    assert raw.startswith(b"HTTP/1.1 408 ")
    assert b"Connection: close\r\n" in raw


def test_trickled_head_is_cut_off(quick_at):
    with quick_at.connect() as sock:
        raw = b""
        try:
            sock.sendall(b"GET /")
            for _ in range(200):  # 1 byte every 50 ms would take 10 s: far over --header-timeout 1
                sock.sendall(b"a")
                if select.select([sock], [], [], 0.05)[0]:
                    break  # the server answered
        except OSError:
            pass
        raw = read_until_close(sock)
    assert raw.startswith(b"HTTP/1.1 408 ")


def test_silent_connection_is_closed_without_a_response(quick_at):
    with quick_at.connect() as sock:
        assert read_until_close(sock) == b""


def test_idle_keep_alive_connection_is_closed(quick_at):
    with quick_at.connect() as sock:
        sock.sendall(b"GET /read-some?n=0 HTTP/1.1\r\n" + H + b"\r\n")
        reader = ResponseReader(sock)
        assert reader.next()[0] == 200
        assert reader.closed()  # after --keepalive 1, with nothing sent in between


@pytest.mark.parametrize("length", [100, 1_000_000])
def test_body_that_stops_arriving_is_408(quick_at, length):
    """Small bodies wait in the selector, large ones in the app's read: both are cut off."""
    with quick_at.connect() as sock:
        sock.sendall(b"POST /digest HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % length + b"x" * 10)
        raw = read_until_close(sock)
    assert raw.startswith(b"HTTP/1.1 408 ")


def test_body_below_the_minimum_rate_is_408(quick_at):
    with quick_at.connect() as sock:
        sock.sendall(b"POST /digest HTTP/1.1\r\n" + H + b"Content-Length: 10000000\r\n\r\n")
        try:
            for _ in range(100):  # 1 KB every 0.1 s, far under --min-body-rate 200000; never stalls 1 s
                sock.sendall(b"x" * 1000)
                if select.select([sock], [], [], 0.1)[0]:
                    break  # the server answered
        except OSError:
            pass
        raw = read_until_close(sock)
    assert raw.startswith(b"HTTP/1.1 408 ")
    assert b"too slow" in raw


# -- when each clock starts -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def clocks(tmp_path_factory):
    """A modest --min-body-rate, and --keepalive longer than --header-timeout."""
    srv = module_server(tmp_path_factory, [
        "--workers", "1", "--threads", "2", "--header-timeout", "1", "--keepalive", "4",
        "--body-timeout", "1", "--min-body-rate", "1000", "http_apps:raw_app"], unix=False)
    yield srv
    srv.kill()
    assert "AssertionError" not in srv.log()


def drip(sock: socket.socket, pieces, every: float, for_at_most: float) -> tuple[bytes, float]:
    """Send ``pieces`` one per ``every`` seconds until the server answers or closes; (reply, when)."""
    began = time.monotonic()
    try:
        for piece in pieces:
            if time.monotonic() - began > for_at_most:
                break
            sock.sendall(piece)
            if select.select([sock], [], [], every)[0]:
                break  # the server answered
    except OSError:
        pass
    reply = read_until_close(sock)
    return reply, time.monotonic() - began


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_small_body_must_keep_the_minimum_rate(clocks, framing):
    """A body the selector holds (under 64 KiB) is judged like a large one, not given 65 s."""
    if framing == "length":
        head = b"Content-Length: 60000\r\n"
        pieces = (b"x" * 10 for _ in range(6000))
    else:
        head = b"Transfer-Encoding: chunked\r\n"
        pieces = (b"a\r\n" + b"x" * 10 + b"\r\n" for _ in range(6000))
    with clocks.connect() as sock:
        sock.sendall(b"POST /digest HTTP/1.1\r\n" + H + head + b"\r\n")
        # 50 bytes/s, every piece well within --body-timeout 1: only the rate can cut it.
        reply, took = drip(sock, pieces, 0.2, for_at_most=20)
    assert reply.startswith(b"HTTP/1.1 408 ") and b"too slow" in reply, reply[:200]
    assert took < 10  # about --body-timeout; it was --body-timeout + 64 KiB / --min-body-rate


def test_small_body_at_the_minimum_rate_is_served(clocks):
    with clocks.connect() as sock:
        sock.sendall(b"POST /digest HTTP/1.1\r\n" + H + b"Content-Length: 6000\r\n\r\n")
        for _ in range(20):  # 3000 bytes/s for 2 s: three times the minimum, past --body-timeout
            sock.sendall(b"x" * 300)
            time.sleep(0.1)
        status, _, body = ResponseReader(sock).next()
    assert (status, json.loads(body)["len"]) == (200, 6000)


def test_kept_alive_request_after_a_long_idle_is_served(clocks):
    """Idle for longer than --header-timeout (but under --keepalive), then a head in two parts."""
    with clocks.connect() as sock:
        reader = ResponseReader(sock)
        sock.sendall(b"GET /read-some?n=0 HTTP/1.1\r\n" + H + b"\r\n")
        assert reader.next()[0] == 200
        time.sleep(2.5)
        sock.sendall(b"GET /read-some?n=0 HTTP/1.1\r\n")
        time.sleep(0.3)
        sock.sendall(H + b"\r\n")
        assert reader.next()[0] == 200


def test_kept_alive_head_cannot_be_trickled(clocks):
    """Its clock starts at its first byte: --header-timeout, not --keepalive, bounds the head."""
    with clocks.connect() as sock:
        sock.sendall(b"GET /read-some?n=0 HTTP/1.1\r\n" + H + b"\r\n")
        reader = ResponseReader(sock)
        assert reader.next()[0] == 200
        reply, took = drip(sock, (b"GET /"[i:i + 1] or b"a" for i in range(400)), 0.1, for_at_most=20)
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:200]
    assert took < 4  # --header-timeout 1 after the first byte; --keepalive + --header-timeout would be 5


@pytest.fixture(scope="module")
def late(tmp_path_factory):
    """A --header-timeout long enough to start dripping well inside it."""
    srv = module_server(tmp_path_factory, [
        "--workers", "1", "--threads", "2", "--header-timeout", "4", "--keepalive", "0.5",
        "http_apps:raw_app"], unix=False)
    yield srv
    srv.kill()
    assert "AssertionError" not in srv.log()


def test_head_clock_runs_from_accept_not_from_the_first_byte(late):
    with late.connect() as sock:
        connected = time.monotonic()
        time.sleep(3.5)  # silent, then 1 byte every 0.1 s
        reply, _ = drip(sock, (b"GET /"[i:i + 1] or b"a" for i in range(400)), 0.1, for_at_most=20)
        took = time.monotonic() - connected
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:200]
    assert took < 6.5  # --header-timeout 4 from accept; counted from the first byte it was 7.5


def test_blank_lines_do_not_hold_a_connection(late):
    """Empty lines before a request begin nothing, so they move no clock."""
    with late.connect() as sock:
        reply, took = drip(sock, (b"\r\n" for _ in range(100)), 0.5, for_at_most=20)
    assert reply == b""
    assert took < 9  # --header-timeout 4 from accept; each blank line used to restart it


# -- threads ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    srv = module_server(tmp_path_factory, [
        "--workers", "1", "--threads", "2", "--worker-connections", "1500", "--keepalive", "120",
        "--header-timeout", "120", "--body-timeout", "120", "http_apps:raw_app"])
    yield srv
    srv.kill()
    assert "AssertionError" not in srv.log()


def quick_get(server, path: str) -> tuple[int, bytes]:
    with server.connect(timeout=15) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\n".encode() + H + b"Connection: close\r\n\r\n")
        raw = read_until_close(sock)
    return int(raw.split(b" ", 2)[1]), raw.partition(b"\r\n\r\n")[2]


def test_at_most_threads_requests_in_the_app(pool, tmp_path):
    release = tmp_path / "release"
    socks = []
    try:
        for i in range(3):
            sock = pool.connect()
            sock.sendall(f"GET /hold?id=h{i}&release={release} HTTP/1.1\r\n".encode() + H + b"\r\n")
            socks.append(sock)
        pool.wait_log(r"hold h\d entered", count=2)
        # Give a third thread every chance to (wrongly) enter before letting the two go.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert len(pool.wait_log(r"hold h\d entered", count=2)) == 2
            time.sleep(0.05)
        release.touch()
        results = [json.loads(ResponseReader(s).next()[2]) for s in socks]
    finally:
        for s in socks:
            s.close()
    assert sorted(r["id"] for r in results) == ["h0", "h1", "h2"]
    assert max(r["max"] for r in results) == 2


def test_wsgi_multithread_follows_threads(pool):
    status, body = quick_get(pool, "/environ")
    environ = json.loads(body)
    assert (environ["wsgi.multithread"], environ["wsgi.multiprocess"]) == (True, False)


@pytest.fixture(scope="module")
def inline(tmp_path_factory):
    """--threads 1 serves on the selector's own thread: the case a slow client would hurt most."""
    srv = module_server(tmp_path_factory, [
        "--workers", "1", "--threads", "1", "--header-timeout", "120", "--body-timeout", "120",
        "http_apps:raw_app"], unix=False)
    yield srv
    srv.kill()
    assert "AssertionError" not in srv.log()


@pytest.fixture(params=["threads-2", "threads-1"])
def any_pool(request):
    return request.getfixturevalue("pool" if request.param == "threads-2" else "inline")


def test_slow_clients_do_not_hold_app_threads(any_pool):
    """Partial heads and small bodies still arriving wait in the selector: app threads stay free."""
    pool = any_pool
    slow = []
    try:
        for _ in range(4):
            sock = pool.connect()
            sock.sendall(b"GET /read-some HTTP/1.1\r\nHost: te")
            slow.append(sock)
            sock = pool.connect()
            sock.sendall(b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5000\r\n\r\npartial")
            slow.append(sock)
        for _ in range(3):
            assert quick_get(pool, "/read-some?n=0")[0] == 200
        # The slow ones are still being waited for, and are served once they finish.
        slow[0].sendall(b"st\r\n\r\n")
        assert ResponseReader(slow[0]).next()[0] == 200
        slow[1].sendall(b"y" * (5000 - len(b"partial")))
        assert len(ResponseReader(slow[1]).next()[2]) == 5000
    finally:
        for s in slow:
            s.close()


def test_a_thousand_idle_keep_alive_connections(pool):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    tcp = at(pool, listener_urls(pool)["tcp"])
    idle: list[socket.socket] = []
    try:
        for _ in range(1000):
            sock = tcp.connect()
            sock.sendall(b"GET /read-some?n=0 HTTP/1.1\r\n" + H + b"\r\n")
            idle.append(sock)
        for sock in idle:
            reader = ResponseReader(sock)
            status, headers, _ = reader.next()
            assert status == 200 and "connection" not in headers
        for transport in ("tcp", "unix"):
            assert quick_get(at(pool, listener_urls(pool)[transport]), "/read-some?n=0")[0] == 200
        # Every one of them is still open and usable.
        for sock in idle[::100]:
            sock.sendall(b"GET /read-some?n=1 HTTP/1.1\r\n" + H + b"\r\n")
            assert ResponseReader(sock).next()[0] == 200
    finally:
        for sock in idle:
            sock.close()
    assert "Traceback" not in pool.log()
