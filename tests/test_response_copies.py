"""A large response body goes out without being copied next to its head.

Each pool thread serving a large body held a second copy of it (head + body,
joined for one send): four threads, four copies, and the worker's RSS grew past
gunicorn's. A copy cannot be seen from the client, so these tests drive a
Connection in-process over real loopback TCP and count what Python allocates
while it serves.
"""

from __future__ import annotations

import socket
import threading
import tracemalloc

import pytest

from conftest import loopback_connection, until_ready
from sharedsock.connection import WAIT, Connection

BIG = bytes(range(256)) * 4096  # 1 MiB


def _app(environ, start_response):
    path = environ["PATH_INFO"]
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(BIG)))])
    if path == "/iterated":
        return iter([BIG])  # the first write: head_with
    return [BIG]  # a whole body: whole_body


@pytest.fixture
def pair():
    with loopback_connection(_app, send_buffer=32768) as pair:  # small: partial sends happen
        yield pair


def _serve(conn: Connection, client: socket.socket, path: str) -> tuple[int, bytes, int]:
    """Serve one request while a thread reads the response; (status, body, peak bytes allocated)."""
    client.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    until_ready(conn)
    buffer = bytearray(2 * len(BIG))  # allocated before counting: the reader only fills it
    got = [0]

    def read() -> None:
        view = memoryview(buffer)
        while True:
            got[0] += client.recv_into(view[got[0]:])
            end = buffer.find(b"\r\n\r\n", 0, got[0])
            if end != -1 and got[0] >= end + 4 + len(BIG):
                return

    reader = threading.Thread(target=read)
    tracemalloc.start()
    try:
        reader.start()
        assert conn.serve() == WAIT
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        reader.join(30)
    assert not reader.is_alive(), "the response did not arrive"
    response = bytes(buffer[:got[0]])
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body, peak


@pytest.mark.parametrize("path", ["/whole", "/iterated"])
def test_a_large_body_is_sent_beside_its_head_not_joined_to_it(pair, path):
    conn, client = pair
    status, body, peak = _serve(conn, client, path)
    assert status == 200 and body == BIG  # every byte, in order, across partial sends
    # Joining head and body allocated a copy of the whole body (over 1 MiB).
    assert peak < len(BIG) // 4, f"{peak} bytes allocated while serving a {len(BIG)}-byte body"
    status, body, _ = _serve(conn, client, path)  # and the connection is still good
    assert status == 200 and body == BIG
