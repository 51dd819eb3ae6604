"""Clients that read a large response slowly.

A Linux send buffer grows to megabytes and is reported writable only once a
good part of it is free, so a steady reader well above --min-body-rate can
keep a write waiting for longer than --body-timeout. Such a reader must get
the whole response; one that stops reading, or reads under the rate, is cut
off, and the cut is logged at info level. The readers sleep between reads on
purpose: their pace is the behaviour under test.
"""

from __future__ import annotations

import re
import socket
import tempfile
import threading
import time

import pytest

from conftest import DEADLINE, listener_urls

SIZE = 5 << 20  # more than a full send buffer (4 MB at most with Linux's default tcp_wmem)
STEADY = 400_000  # bytes/s: 20x --min-body-rate, yet a full buffer takes ~3 s to become writable
RATE_ARGS = ["--body-timeout", "1.5", "--min-body-rate", "20000"]
TOO_SLOW = r"took nothing for [\d.]+s|took \d+ bytes in [\d.]+s, under --min-body-rate 20000"
CUT = re.compile(r"\[INFO\] cut off client (\S+) during GET (\S+): it (.*); (\d+) bytes of the response sent")


def start(start_server, start_method: str) -> object:
    sock_dir = tempfile.mkdtemp(prefix="ss-")
    server = start_server(["--bind", "127.0.0.1:0", "--bind", f"unix:{sock_dir}/s.sock", "--workers", "1",
                           "--threads", "4", "--start-method", start_method, *RATE_ARGS, "slow_apps:app"])
    server.wait_log(r"Listening at: unix:")
    return server


def address(server, transport: str):
    url = listener_urls(server)[transport]
    if url.startswith("unix:"):
        return url[5:]
    host, _, port = url.split("://", 1)[1].rpartition(":")
    return host, int(port)


def request(server, path: str, transport: str = "tcp") -> socket.socket:
    """A GET from a client with a small receive buffer, so the server's send buffer holds the rest."""
    where = address(server, transport)
    sock = socket.socket(socket.AF_UNIX if isinstance(where, str) else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # before connect: it sets the window
    sock.settimeout(DEADLINE)
    sock.connect(where)
    sock.sendall(f"GET {path}?size={SIZE} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
    return sock


def read_paced(sock: socket.socket, rate: float) -> bytes:
    """Everything until the server closes, never faster than ``rate`` bytes/s."""
    chunks = []
    got = 0
    began = time.monotonic()
    while True:
        delay = began + got / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        data = sock.recv(4096)
        if not data:
            return b"".join(chunks)
        got += len(data)
        chunks.append(data)


def test_steady_slow_readers_get_the_whole_response(start_server, start_method):
    server = start(start_server, start_method)
    paths = ["/list", "/file", "/stream"]  # one send, sendfile, and a write per 64 KiB
    results: dict[str, bytes] = {}

    def fetch(path: str) -> None:
        with request(server, path) as sock:
            results[path] = read_paced(sock, STEADY)

    threads = [threading.Thread(target=fetch, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE * 2)
    for path in paths:
        head, _, body = results[path].partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), (path, head)
        assert (len(body), body.count(b"s")) == (SIZE, SIZE), (path, server.log())
    assert "cut off" not in server.log()


@pytest.mark.parametrize("transport, path", [("tcp", "/list"), ("tcp", "/file"), ("unix", "/stream")])
def test_reader_that_stops_is_cut_off_and_logged(start_server, start_method, transport, path):
    server = start(start_server, start_method)
    with request(server, path, transport):
        began = time.monotonic()
        match = server.wait_log(CUT.pattern, timeout=20)[0]
        took = time.monotonic() - began
    assert match.group(1) == ("127.0.0.1" if transport == "tcp" else "(unix)")
    # What the kernel's receive buffer took on the client's side may count as a little reading.
    assert re.fullmatch(TOO_SLOW, match.group(3)), match.group(0)
    assert 0 < int(match.group(4)) < SIZE
    assert took < 15  # about --body-timeout after the buffer filled; a reader is never waited on forever


def test_reader_under_the_minimum_rate_is_cut_off(start_server, start_method):
    server = start(start_server, start_method)
    with request(server, "/list") as sock:
        sock.settimeout(1)
        deadline = time.monotonic() + 20
        while not CUT.search(server.log()) and time.monotonic() < deadline:
            try:
                sock.recv(500)  # 5 KB/s: a quarter of --min-body-rate
            except TimeoutError:
                pass
            time.sleep(0.1)
    match = server.wait_log(CUT.pattern, timeout=1)[0]
    assert re.fullmatch(TOO_SLOW, match.group(3)), match.group(0)
