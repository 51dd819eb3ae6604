"""A small request body that arrives with its head reaches the app whole, in one pass.

The selector side takes a body of up to PREFETCH_LIMIT before the app is called
(so a slow client holds no thread). One read holds such a body with a common
head; with a long head it used to take a second pass through the selector
when it filled that read, and the app then read it piece by piece through the
protocol's events. These tests drive a Connection
in-process over real loopback TCP.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios

from conftest import ResponseReader, loopback_connection, wait_for
from sharedsock.connection import READY, WAIT
from sharedsock.http.exchange import PREFETCH_LIMIT
from sharedsock.sockio import READ_SIZE

BODY = bytes(range(256)) * (PREFETCH_LIMIT // 256)  # exactly the prefetch limit: it fills a read
seen: dict = {}


def _app(environ, start_response):
    stream = environ["wsgi.input"]
    path = environ["PATH_INFO"]
    if path == "/lines":
        first = stream.readline()
        stream.close()  # apps may close wsgi.input; reading on must still work
        data = first + b"".join(stream)
    elif path == "/small-reads":
        parts = []
        while True:
            part = stream.read(1000)
            if not part:
                break
            parts.append(part)
        data = b"".join(parts)
    else:
        data = stream.read()
    seen["body"] = data
    seen["after"] = stream.read()
    out = b"%d" % len(data)
    start_response("200 OK", [("Content-Length", str(len(out)))])
    return [out]


# Header fields that make head and body overflow one read (READ_SIZE holds a small body
# with a common head): each is below the default --limit-request-field-size.
PADDING = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"p" * 8000) for n in range(3))


def _post(path: str, body: bytes, padding: bytes = PADDING) -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: t\r\n%sContent-Length: %d\r\n\r\n%s" % (
        path.encode(), padding, len(body), body)


def _unread(sock: socket.socket) -> int:
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def _arrived(conn, size: int) -> None:
    """Poll until the server's socket holds ``size`` bytes (the whole request)."""
    wait_for(lambda: _unread(conn.sock) >= size, message="the whole request in the server's socket")


def _exchange(path: str, body: bytes, padding: bytes = PADDING) -> tuple[list, bytes]:
    request = _post(path, body, padding)
    if padding:
        assert len(request) > READ_SIZE  # the body does not fit in the read that takes the head
    else:
        assert len(request) <= READ_SIZE
    with loopback_connection(_app) as (conn, client):
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        client.sendall(request)
        _arrived(conn, len(request))
        turns = [conn.on_readable()]
        while turns[-1] == WAIT and len(turns) < 10:
            turns.append(conn.on_readable())
        assert conn.serve() == WAIT  # kept alive
        status, _, answer = ResponseReader(client).next()
        assert status == 200
        return turns, answer


def test_a_body_that_fills_a_read_is_taken_in_the_same_pass():
    turns, answer = _exchange("/", BODY)
    assert turns == [READY]
    assert answer == b"%d" % len(BODY) and seen["body"] == BODY and seen["after"] == b""


def test_a_body_at_the_prefetch_limit_with_a_common_head_comes_in_one_read():
    turns, answer = _exchange("/", BODY, padding=b"")
    assert turns == [READY]
    assert answer == b"%d" % len(BODY) and seen["body"] == BODY and seen["after"] == b""


def test_the_app_reads_a_received_body_in_small_pieces():
    _, answer = _exchange("/small-reads", BODY)
    assert answer == b"%d" % len(BODY) and seen["body"] == BODY and seen["after"] == b""


def test_the_app_reads_a_received_body_by_lines_even_after_closing_it():
    lines = b"".join(b"line %d\n" % n for n in range(8000))[:PREFETCH_LIMIT]
    _, answer = _exchange("/lines", lines)
    assert answer == b"%d" % len(lines) and seen["body"] == lines and seen["after"] == b""


def test_the_head_limit_allows_one_read_of_slack():
    """The parser counts the whole read in which a head began: its slack is one read."""
    from sharedsock.http.parser import _SLACK

    assert _SLACK == READ_SIZE
