"""TCP_NODELAY is set only when Nagle's algorithm could hold a write back.

Which writes those are cannot be seen from a client without timing it, so these
tests drive a Connection in-process over a real loopback TCP connection and ask
the server-side socket directly.
"""

from __future__ import annotations

import socket
import threading

import pytest

from conftest import ResponseReader, loopback_connection, until_ready
from sharedsock.connection import WAIT, Connection


def _app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/stream":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"first ")
        return iter([b"second\n"])
    if path == "/upload":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"whole\n"]


@pytest.fixture
def pair():
    """(server-side Connection, client socket) over real loopback TCP."""
    with loopback_connection(_app) as pair:
        yield pair


def _nodelay(conn: Connection) -> bool:
    return bool(conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def _exchange(conn: Connection, client: socket.socket, request: bytes) -> int:
    client.sendall(request)
    until_ready(conn)
    return conn.serve()


def test_first_whole_response_leaves_nagle_on_and_a_second_turns_it_off(pair):
    conn, client = pair
    assert _exchange(conn, client, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n") == WAIT
    assert not _nodelay(conn)  # one send() of the whole response: nothing for Nagle to hold
    assert _exchange(conn, client, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n") == WAIT
    assert _nodelay(conn)
    reader = ResponseReader(client)
    assert [reader.next()[2] for _ in range(2)] == [b"whole\n", b"whole\n"]


def test_a_streamed_body_turns_it_off(pair):
    conn, client = pair
    assert _exchange(conn, client, b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n") == WAIT
    assert _nodelay(conn)


def test_100_continue_turns_it_off(pair):
    conn, client = pair
    request = (b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n"
               b"Expect: 100-continue\r\n\r\n")
    client.sendall(request)
    until_ready(conn)
    result = []
    server = threading.Thread(target=lambda: result.append(conn.serve()))
    server.start()
    assert client.recv(25).startswith(b"HTTP/1.1 100 Continue")
    client.sendall(b"x" * 100000)
    server.join(30)
    assert result == [WAIT]
    assert _nodelay(conn)
