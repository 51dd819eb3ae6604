"""A connection handed to the pool stays registered in the worker's selector (worker._on_lent):
bytes or a close from its client while a thread serves it must reach that thread, never the loop,
and a closed connection's leftover registration must not hurt the client that gets its fd next."""

from __future__ import annotations

import socket

import pytest

from conftest import ResponseReader, http_get


@pytest.mark.parametrize("threads", ["2", "4"])
def test_next_request_and_half_close_sent_during_a_slow_request_are_answered(start_server, threads):
    server = start_server(["--bind", "127.0.0.1:0", "--workers", "1", "--threads", threads,
                           "testapp:app"])
    with server.connect() as sock:
        sock.sendall(b"GET /slow?0.5 HTTP/1.1\r\nHost: t\r\n\r\n")
        server.wait_log("slow request started")
        status, _, body = http_get(server, "/meanwhile")  # the loop is free meanwhile
        # While a thread runs the first: the loop sees these bytes, then the end.
        assert status == 200 and b"path=/meanwhile" in body
        sock.sendall(b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        reader = ResponseReader(sock)
        first, second = reader.next(), reader.next()
    assert first[0] == 200 and second[0] == 200
    assert b"path=/second" in second[2]
    assert http_get(server, "/after")[0] == 200


def test_clients_gone_during_slow_requests_leave_their_fds_to_new_clients(start_server):
    server = start_server(["--bind", "127.0.0.1:0", "--workers", "1", "--threads", "3", "testapp:app"])
    for round_ in range(3):
        gone = []
        for _ in range(2):
            sock = server.connect()
            sock.sendall(b"GET /slow?0.3 HTTP/1.1\r\nHost: t\r\n\r\n")
            gone.append(sock)
        server.wait_log("slow request started", count=2 * (round_ + 1))
        for sock in gone:
            sock.close()  # the threads serving them meet a closed peer; their fds come free
        for n in range(20):
            status, _, body = http_get(server, f"/r{round_}-{n}")
            assert status == 200 and f"path=/r{round_}-{n}".encode() in body
    with server.connect() as sock:  # kept-alive clients on reused fds go back and forth too
        reader = ResponseReader(sock)
        for n in range(20):
            sock.sendall(f"GET /k{n} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            status, _, body = reader.next()
            assert status == 200 and f"path=/k{n}".encode() in body
